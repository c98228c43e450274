/* mailtext: the email templates and their renderer (see mailtext.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailtext.h"
#include "timetext.h"

struct mailtext_template {
    const char *name;
    const char *subject;
    const char *body;
};

#define MAILTEXT_SIGNATURE                                                                         \
    "\n"                                                                                           \
    "-- \n"                                                                                        \
    "restock이 자동으로 보낸 메일입니다. 회신하지 마세요.\n"                    \
    "(Sent automatically by restock; please do not reply.)\n"

/* Every text restock emails, indexed by enum mailtext_id. */
static const struct mailtext_template mailtext_templates[MAILTEXT_COUNT] = {
    [MAILTEXT_AD_PAUSE] =
        {"ad_pause", "[restock] 품절: {product_name} ({sku}) 광고를 일시중지해 주세요",
         "안녕하세요, 광고 담당자님.\n"
         "\n"
         "{product_name} ({sku}) 상품이 {time}에 품절되었습니다.\n"
         "재고가 없는 동안 이 상품의 광고를 일시중지해 주세요.\n"
         "공장에 재입고 주문을 보냈으며, 재고가 들어오면 다시 알려 드립니다.\n"
         "\n"
         "상품: {product_name} ({sku})\n"
         "품절 시각: {time}\n"
         "재입고 주문: {order_id}\n"
         "\n"
         "{product_name} ({sku}) sold out at {time}. Please pause its advertisement;\n"
         "we will tell you when it is back in stock.\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_AD_RESUME] =
        {"ad_resume", "[restock] 재입고: {product_name} ({sku}) 광고를 다시 시작해 주세요",
         "안녕하세요, 광고 담당자님.\n"
         "\n"
         "{product_name} ({sku}) 상품이 {time}에 {quantity}개 재입고되었습니다.\n"
         "이 상품의 광고를 다시 시작해 주세요.\n"
         "\n"
         "상품: {product_name} ({sku})\n"
         "입고 수량: {quantity}\n"
         "입고 시각: {time}\n"
         "재입고 주문: {order_id}\n"
         "품절 중 구매하지 못한 고객: {turned_away}명 ({turned_units}개)\n"
         "\n"
         "{product_name} ({sku}) is back in stock ({quantity} units, {time}).\n"
         "While it was sold out, {turned_away} customers were turned away\n"
         "({turned_units} units asked for). Please resume its advertisement.\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_DEAD_LETTER] =
        {"dead_letter", "[restock] 처리 실패 ({queue} 큐): {what}",
         "운영자님,\n"
         "\n"
         "{queue} 큐의 메시지를 {attempts}번 시도했지만 처리하지 못해 dead/로 옮겼습니다.\n"
         "\n"
         "메시지: {message_id}\n"
         "내용: {what}\n"
         "시도 횟수: {attempts}\n"
         "마지막 오류: {last_error}\n"
         "시각: {time}\n"
         "\n"
         "원인을 해결한 뒤 다시 처리하려면:\n"
         "    restockctl dlq redrive {message_id}\n"
         "자세히 보려면: restockctl dlq show {message_id}\n"
         "\n"
         "A message of the {queue} queue failed {attempts} times and was moved to dead/.\n"
         "Last error: {last_error}\n"
         "Redrive it with: restockctl dlq redrive {message_id}\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_CALLBACK_MISSING] =
        {"callback_missing", "[restock] 공장 콜백 없음: 주문 {order_id} ({product_name})",
         "운영자님,\n"
         "\n"
         "공장에 보낸 재입고 주문의 입고 콜백이 {age} 동안 오지 않았습니다.\n"
         "공장이 주문을 받았는지 확인해 주세요.\n"
         "\n"
         "주문: {order_id}\n"
         "상품: {product_name} ({sku})\n"
         "공장: {factory_name} ({factory_id})\n"
         "주문 전송 시각: {sent_at}\n"
         "\n"
         "열린 주문 보기: restockctl orders\n"
         "공장이 납품했다면 재고에 반영: restockctl orders fulfil {order_id} <수량>\n"
         "\n"
         "Order {order_id} for {product_name} ({sku}) was sent to factory\n"
         "{factory_name} ({factory_id}) at {sent_at}; no callback has come in "
         "{age}.\n"
         "If the factory did deliver, record it: restockctl orders fulfil {order_id} "
         "QUANTITY\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_CORRUPT] =
        {"corrupt", "[restock] 손상된 메시지 파일 ({queue} 큐)",
         "운영자님,\n"
         "\n"
         "{queue} 큐에서 읽을 수 없거나 손상된 파일을 발견해 corrupt/로 옮겼습니다.\n"
         "나머지 메시지는 계속 처리됩니다.\n"
         "\n"
         "파일: {path}\n"
         "이유: {last_error}\n"
         "시각: {time}\n"
         "\n"
         "파일을 확인하고, 필요하면 그 요청을 다시 만들어 주세요.\n"
         "\n"
         "An unreadable or torn file of the {queue} queue was moved to corrupt/:\n"
         "{path} ({last_error}). The other messages keep flowing.\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_SPOOL_FAULT] =
        {"spool_fault", "[restock] 스풀 디스크 오류 ({queue} 큐)",
         "운영자님,\n"
         "\n"
         "{queue} 큐의 스풀에 쓰기(write, fsync, rename)가 실패했습니다.\n"
         "판매는 계속되지만, 새 주문과 이메일은 디스크가 복구될 때까지 보내지지 않고\n"
         "DB의 outbox에서 기다립니다 (잃어버리지 않습니다). 워커가 계속 다시 시도합니다.\n"
         "\n"
         "오류: {last_error}\n"
         "시각: {time}\n"
         "\n"
         "디스크 공간(df)과 커널 로그(dmesg)를 확인해 주세요.\n"
         "\n"
         "A write, fsync or rename in the spool of the {queue} queue failed:\n"
         "{last_error}. Checkout keeps selling; new orders and emails wait in the\n"
         "outbox, not lost, and the worker retries until the disk takes them. Check\n"
         "free space (df) and the kernel log (dmesg).\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_DELAY_WARNING] =
        {"delay_warning", "[restock] 처리 지연: {queue} 큐의 메시지가 {age} 동안 대기 중",
         "운영자님,\n"
         "\n"
         "{queue} 큐에서 가장 오래 기다린 메시지가 {age} 동안 처리되지 않았습니다.\n"
         "대기 중인 메시지: {count}개\n"
         "\n"
         "공장 API와 SMTP 서버가 응답하는지 확인해 주세요.\n"
         "상태 보기: restockctl status\n"
         "\n"
         "The oldest waiting message of the {queue} queue has waited {age};\n"
         "{count} messages are waiting. Check that the factory API and the SMTP relay "
         "answer.\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_OVER_DELIVERY] =
        {"over_delivery", "[restock] 주문보다 많은 입고 콜백 거부: 주문 {order_id} ({sku})",
         "운영자님,\n"
         "\n"
         "공장 콜백이 주문 수량보다 많은 입고를 알려 와서 반영하지 않았습니다.\n"
         "재고와 주문은 바뀌지 않았습니다.\n"
         "\n"
         "주문: {order_id}\n"
         "상품: {product_name} ({sku})\n"
         "공장: {factory_name} ({factory_id})\n"
         "주문 수량: {ordered}\n"
         "콜백의 입고 수량: {quantity}\n"
         "시각: {time}\n"
         "\n"
         "공장에 확인한 뒤, 실제로 더 많이 들어왔다면 재고에 반영:\n"
         "    restockctl orders fulfil --over {order_id} {quantity}\n"
         "주문 수량만큼 들어왔다면:\n"
         "    restockctl orders fulfil {order_id} {ordered}\n"
         "\n"
         "A callback for order {order_id} ({sku}) claimed {quantity} units; {ordered} were\n"
         "ordered. Nothing was applied. Once the factory confirms, record the real delivery:\n"
         "    restockctl orders fulfil --over {order_id} {quantity}\n"
         "or, if the ordered quantity came: restockctl orders fulfil {order_id} "
         "{ordered}\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_MAIL_DEAD] =
        {"mail_dead", "[restock] 메일 전송 실패: {recipient} 앞 \"{subject}\"",
         "운영자님,\n"
         "\n"
         "다음 메일을 보내지 못해 mail 큐의 dead/로 옮겼습니다.\n"
         "받는 사람이 이 내용을 받지 못했으니 직접 알려 주세요.\n"
         "\n"
         "받는 사람: {recipient}\n"
         "제목: {subject}\n"
         "SMTP 서버의 응답: {reason}\n"
         "메시지: {message_id}\n"
         "시각: {time}\n"
         "\n"
         "원인을 해결한 뒤 다시 보내려면:\n"
         "    restockctl dlq redrive {message_id}\n"
         "\n"
         "The email \"{subject}\" to {recipient} could not be delivered and was moved\n"
         "to dead/: {reason}\n"
         "Tell the recipient yourself, or redrive it: restockctl dlq redrive "
         "{message_id}\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_WEBHOOK_DEAD] =
        {"webhook_dead", "[restock] 웹훅 전달 실패: {type} → {endpoint}",
         "운영자님,\n"
         "\n"
         "다음 웹훅 이벤트를 엔드포인트에 전달하지 못해 webhook 큐의 dead/로 옮겼습니다.\n"
         "받는 시스템은 이 이벤트를 받지 못했습니다.\n"
         "\n"
         "엔드포인트: {endpoint}\n"
         "이벤트 유형: {type}\n"
         "메시지 (webhook-id): {message_id}\n"
         "시도 횟수: {attempts}\n"
         "이유: {reason}\n"
         "시각: {time}\n"
         "\n"
         "원인을 해결한 뒤 다시 보내려면 (같은 webhook-id로 전달됩니다):\n"
         "    restockctl dlq redrive {message_id}\n"
         "\n"
         "The {type} event could not be delivered to webhook endpoint {endpoint} and\n"
         "was moved to dead/ after {attempts} attempts: {reason}\n"
         "Once the endpoint is fixed, redrive it (same webhook-id): restockctl dlq redrive "
         "{message_id}\n" MAILTEXT_SIGNATURE},
    [MAILTEXT_WEBHOOK_DISABLED] =
        {"webhook_disabled", "[restock] 웹훅 엔드포인트 중지됨 ({status}): {url}",
         "운영자님,\n"
         "\n"
         "restock-worker가 다음 웹훅 엔드포인트로의 전달을 중지했습니다.\n"
         "이 엔드포인트의 이벤트는 다시 켤 때까지 보내지 않고 기다립니다\n"
         "(webhook_lifetime이 지나면 dead/로 갑니다).\n"
         "\n"
         "엔드포인트: {endpoint}\n"
         "URL: {url}\n"
         "상태: {status}\n"
         "이유: {reason}\n"
         "시각: {time}\n"
         "\n"
         "받는 시스템을 고친 뒤 다시 켜려면:\n"
         "    restockctl webhook enable {endpoint}\n"
         "\n"
         "restock-worker stopped delivering to webhook endpoint {endpoint} ({url}):\n"
         "{reason}. Its events wait until you enable it again (or their webhook_lifetime\n"
         "ends): restockctl webhook enable {endpoint}\n" MAILTEXT_SIGNATURE},
};

/* The placeholders a template may use (documented in mailtext.h): a typo in a
 * template is caught by the unit test that renders them all. */
static const char *const mailtext_placeholders[] = {
    "product_name", "sku",     "quantity",    "order_id",     "time",     "factory_name",
    "factory_id",   "sent_at", "queue",       "message_id",   "what",     "attempts",
    "last_error",   "path",    "age",         "count",        "ordered",  "recipient",
    "subject",      "reason",  "turned_away", "turned_units", "endpoint", "url",
    "type",         "status",
};

const char *
mailtext_name(enum mailtext_id id)
{
    if ((int)id < 0 || id >= MAILTEXT_COUNT)
        return NULL;
    return mailtext_templates[id].name;
}

int
mailtext_find(const char *name)
{
    for (int i = 0; i < MAILTEXT_COUNT; i++)
        if (strcmp(mailtext_templates[i].name, name) == 0)
            return i;
    return -1;
}

static const char *
mailtext_value(const char *name, size_t len, const mailtext_var *vars)
{
    for (; vars != NULL && vars->name != NULL; vars++)
        if (strlen(vars->name) == len && strncmp(vars->name, name, len) == 0)
            return vars->value ? vars->value : "";
    return NULL;
}

static int
mailtext_known(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(mailtext_placeholders) / sizeof(mailtext_placeholders[0]); i++)
        if (strlen(mailtext_placeholders[i]) == len &&
            strncmp(mailtext_placeholders[i], name, len) == 0)
            return 1;
    return 0;
}

/* Fills one template text into a malloc'd string. */
static int
mailtext_fill(const char *tname, const char *text, const mailtext_var *vars, int one_line,
              char **out, errbuf *err)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);

    *out = NULL;
    if (f == NULL)
        return errbuf_set(err, "template %s: out of memory", tname);
    for (const char *p = text; *p; p++) {
        const char *end, *value;

        if (*p != '{') {
            fputc(*p, f);
            continue;
        }
        if (p[1] == '{') {
            fputc('{', f);
            p++;
            continue;
        }
        end = strchr(p + 1, '}');
        if (end == NULL) {
            errbuf_set(err, "template %s: unterminated placeholder at \"%.20s\"", tname, p);
            goto fail;
        }
        if (!mailtext_known(p + 1, (size_t)(end - p - 1))) {
            errbuf_set(err, "template %s: unknown placeholder {%.*s}", tname, (int)(end - p - 1),
                       p + 1);
            goto fail;
        }
        value = mailtext_value(p + 1, (size_t)(end - p - 1), vars);
        if (value == NULL) {
            errbuf_set(err, "template %s: no value for {%.*s}", tname, (int)(end - p - 1), p + 1);
            goto fail;
        }
        for (const char *v = value; *v; v++)
            fputc(one_line && (*v == '\r' || *v == '\n' || *v == '\t') ? ' ' : *v, f);
        p = end;
    }
    if (ferror(f) || fclose(f) != 0) {
        f = NULL;
        errbuf_set(err, "template %s: out of memory", tname);
        goto fail;
    }
    *out = buf;
    return RS_OK;

fail:
    if (f != NULL)
        fclose(f);
    free(buf);
    return RS_ERR;
}

int
mailtext_render(enum mailtext_id id, const mailtext_var *vars, char **subject, char **body,
                errbuf *err)
{
    const struct mailtext_template *t;

    *subject = *body = NULL;
    if ((int)id < 0 || id >= MAILTEXT_COUNT)
        return errbuf_set(err, "mail template %d: no such template", (int)id);
    t = &mailtext_templates[id];
    if (mailtext_fill(t->name, t->subject, vars, 1, subject, err) != RS_OK)
        return RS_ERR;
    if (mailtext_fill(t->name, t->body, vars, 0, body, err) != RS_OK) {
        free(*subject);
        *subject = NULL;
        return RS_ERR;
    }
    return RS_OK;
}

int
mailtext_expand(const char *text, const mailtext_var *vars, char **out, errbuf *err)
{
    return mailtext_fill("(text)", text, vars, 0, out, err);
}
