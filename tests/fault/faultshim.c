/* faultshim: an LD_PRELOAD shared object for tests only, that makes the disk fail
 * on demand. While the file named by FAULTSHIM_CTL exists, its first line,
 * "OPS PREFIX", makes the operations OPS (a comma-separated list of fsync, rename,
 * write) fail with EIO on descriptors (the folder's, for renames) whose path
 * begins with PREFIX. fsync covers fdatasync and syncfs too. The file is read at
 * every call, so that a test turns the fault on and off while the program runs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Whether op fails on fd now. Only raw system calls inside: no stdio, no write. */
static int
faultshim_fails(const char *op, int fd)
{
    const char *ctl = getenv("FAULTSHIM_CTL");
    char line[PATH_MAX + 64], path[PATH_MAX], link[64], *prefix, *nl;
    ssize_t n;
    int cfd, e = errno;

    if (ctl == NULL || (cfd = open(ctl, O_RDONLY | O_CLOEXEC)) < 0) {
        errno = e;
        return 0;
    }
    n = read(cfd, line, sizeof(line) - 1);
    close(cfd);
    errno = e;
    if (n <= 0)
        return 0;
    line[n] = '\0';
    if ((nl = strchr(line, '\n')) != NULL)
        *nl = '\0';
    if ((prefix = strchr(line, ' ')) == NULL)
        return 0;
    *prefix++ = '\0';
    if (strstr(line, op) == NULL)
        return 0;
    if (fd == AT_FDCWD)
        return 0;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof(path) - 1);
    errno = e;
    if (n <= 0)
        return 0;
    path[n] = '\0';
    return strncmp(path, prefix, strlen(prefix)) == 0;
}

#define FAULTSHIM_NEXT(type, name) ((type)dlsym(RTLD_NEXT, name))

/* fsync, fdatasync and syncfs: int f(int fd), failing as "fsync". */
#define FAULTSHIM_SYNC(name)                                                                       \
    int name(int fd)                                                                               \
    {                                                                                              \
        if (faultshim_fails("fsync", fd)) {                                                        \
            errno = EIO;                                                                           \
            return -1;                                                                             \
        }                                                                                          \
        return FAULTSHIM_NEXT(int (*)(int), #name)(fd);                                            \
    }

FAULTSHIM_SYNC(fsync)
FAULTSHIM_SYNC(fdatasync)
FAULTSHIM_SYNC(syncfs)

ssize_t
write(int fd, const void *buf, size_t len)
{
    if (faultshim_fails("write", fd)) {
        errno = EIO;
        return -1;
    }
    return FAULTSHIM_NEXT(ssize_t(*)(int, const void *, size_t), "write")(fd, buf, len);
}

int
renameat(int olddir, const char *oldpath, int newdir, const char *newpath)
{
    if (faultshim_fails("rename", olddir)) {
        errno = EIO;
        return -1;
    }
    return FAULTSHIM_NEXT(int (*)(int, const char *, int, const char *),
                          "renameat")(olddir, oldpath, newdir, newpath);
}

int
renameat2(int olddir, const char *oldpath, int newdir, const char *newpath, unsigned flags)
{
    if (faultshim_fails("rename", olddir)) {
        errno = EIO;
        return -1;
    }
    return FAULTSHIM_NEXT(int (*)(int, const char *, int, const char *, unsigned),
                          "renameat2")(olddir, oldpath, newdir, newpath, flags);
}
