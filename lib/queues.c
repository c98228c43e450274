/* queues: the names of the spool queues (see queues.h). */
#include "config.h"

#include <string.h>

#include "queues.h"

const char *const queues_names[QUEUES_COUNT] = {QUEUES_ALL};

int
queues_index(const char *name)
{
    for (int i = 0; name != NULL && i < QUEUES_COUNT; i++)
        if (strcmp(name, queues_names[i]) == 0)
            return i;
    return -1;
}
