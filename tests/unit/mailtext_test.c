/* Unit test of mailtext: every template renders, placeholders are checked, and the
 * texts say what the emails must say. */
#include "config.h"

#include <stdlib.h>

#include "mailtext.h"
#include "tap.h"

static const mailtext_var all_vars[] = {
    {"product_name", "부산도너츠"},
    {"sku", "CP-502101"},
    {"quantity", "10"},
    {"order_id", "0b6c8e2a-4f0e-4d8c-9a51-3b1f5e0c7d21"},
    {"time", "2025-01-14 10:00 KST"},
    {"factory_name", "부산도너츠 공장"},
    {"factory_id", "FF-500293"},
    {"sent_at", "2025-01-14 10:00 KST"},
    {"queue", "factory"},
    {"message_id", "1736816400.000001.factory"},
    {"what", "공장 주문 CP-502101 x 10"},
    {"attempts", "5"},
    {"last_error", "connect to 127.0.0.1:9 refused"},
    {"path", "/var/spool/restock/factory/corrupt/x"},
    {"age", "17분"},
    {"count", "3"},
    {"ordered", "10"},
    {"turned_away", "42"},
    {"turned_units", "57"},
    {"recipient", "ads@donut-states.example"},
    {"subject", "[restock] 품절: 도넛 (CP-502101)"},
    {"reason", "permanent failure: smtp 127.0.0.1: 550 5.7.1 no such user (RCPT)"},
    {"endpoint", "0190c0de-0000-7000-8000-000000000001"},
    {"url", "https://erp.example/hooks"},
    {"type", "order.opened"},
    {"status", "gone"},
    {NULL, NULL},
};

int
main(void)
{
    errbuf err = {{0}};
    char *subject, *body, *out;

    for (int id = 0; id < MAILTEXT_COUNT; id++) {
        const char *name = mailtext_name((enum mailtext_id)id);
        int rc = mailtext_render((enum mailtext_id)id, all_vars, &subject, &body, &err);

        ok(rc == RS_OK, "template %s renders with every placeholder given%s%s", name,
           rc ? ": " : "", rc ? err.msg : "");
        if (rc != RS_OK)
            continue;
        is_int(mailtext_find(name), id, "its name finds it back");
        ok(strchr(subject, '\n') == NULL && strchr(subject, '{') == NULL &&
               strncmp(subject, "[restock] ", 10) == 0,
           "%s: the subject is one filled line: %s", name, subject);
        ok(strchr(body, '{') == NULL && strchr(body, '}') == NULL,
           "%s: no placeholder is left in the body", name);
        ok(strstr(body, "\n-- \n") != NULL, "%s: the body ends with the signature", name);
        free(subject);
        free(body);
    }
    ok(mailtext_name(MAILTEXT_COUNT) == NULL && mailtext_find("ad_paused") == -1,
       "unknown ids and names are refused");

    ok(mailtext_render(MAILTEXT_AD_PAUSE, all_vars, &subject, &body, &err) == RS_OK,
       "ad pause renders");
    is_str(subject, "[restock] 품절: 부산도너츠 (CP-502101) 광고를 일시중지해 주세요",
           "ad pause subject names the product and asks to pause");
    ok(strstr(body, "부산도너츠 (CP-502101) 상품이 2025-01-14 10:00 KST에 품절되었습니다.") &&
           strstr(body, "재입고 주문: 0b6c8e2a-4f0e-4d8c-9a51-3b1f5e0c7d21") &&
           strstr(body, "Please pause its advertisement"),
       "ad pause body: product, sku, time of sell-out, open order, English line");
    free(subject);
    free(body);

    ok(mailtext_render(MAILTEXT_AD_RESUME, all_vars, &subject, &body, &err) == RS_OK,
       "ad resume renders");
    ok(strstr(subject, "재입고") && strstr(body, "10개 재입고되었습니다") &&
           strstr(body, "입고 수량: 10"),
       "ad resume names the quantity");
    ok(strstr(body, "품절 중 구매하지 못한 고객: 42명 (57개)") &&
           strstr(body, "42 customers were turned away"),
       "ad resume says how many customers were turned away while sold out");
    free(subject);
    free(body);

    ok(mailtext_render(MAILTEXT_DEAD_LETTER, all_vars, &subject, &body, &err) == RS_OK,
       "dead letter renders");
    ok(strstr(subject, "factory") && strstr(subject, "공장 주문 CP-502101 x 10") &&
           strstr(body, "시도 횟수: 5") &&
           strstr(body, "마지막 오류: connect to 127.0.0.1:9 refused") &&
           strstr(body, "restockctl dlq redrive 1736816400.000001.factory\n"),
       "dead letter: queue, what, attempts, last error, the redrive command");
    free(subject);
    free(body);

    ok(mailtext_render(MAILTEXT_CALLBACK_MISSING, all_vars, &subject, &body, &err) == RS_OK &&
           strstr(body, "공장: 부산도너츠 공장 (FF-500293)") &&
           strstr(body, "주문 전송 시각: 2025-01-14 10:00 KST"),
       "missing callback: order, product, factory, sent at");
    free(subject);
    free(body);
    ok(mailtext_render(MAILTEXT_CORRUPT, all_vars, &subject, &body, &err) == RS_OK &&
           strstr(body, "파일: /var/spool/restock/factory/corrupt/x"),
       "corrupt: the file's path");
    free(subject);
    free(body);
    ok(mailtext_render(MAILTEXT_DELAY_WARNING, all_vars, &subject, &body, &err) == RS_OK &&
           strstr(subject, "17분") && strstr(body, "대기 중인 메시지: 3개"),
       "delay warning: queue, age, count");
    free(subject);
    free(body);
    ok(mailtext_render(MAILTEXT_MAIL_DEAD, all_vars, &subject, &body, &err) == RS_OK &&
           strstr(subject, "ads@donut-states.example") && strstr(subject, "품절: 도넛") &&
           strstr(body, "받는 사람: ads@donut-states.example") &&
           strstr(body, "550 5.7.1 no such user"),
       "dead email: recipient and subject in the subject, the relay's answer in the body");
    free(subject);
    free(body);
    ok(mailtext_render(MAILTEXT_WEBHOOK_DEAD, all_vars, &subject, &body, &err) == RS_OK &&
           strstr(subject, "order.opened") &&
           strstr(body, "0190c0de-0000-7000-8000-000000000001") &&
           strstr(body, "restockctl dlq redrive 1736816400.000001.factory"),
       "dead webhook: type and endpoint, the redrive command");
    free(subject);
    free(body);
    ok(mailtext_render(MAILTEXT_WEBHOOK_DISABLED, all_vars, &subject, &body, &err) == RS_OK &&
           strstr(subject, "gone") && strstr(subject, "https://erp.example/hooks") &&
           strstr(body, "restockctl webhook enable 0190c0de-0000-7000-8000-000000000001"),
       "disabled webhook endpoint: status and URL, the enable command");
    free(subject);
    free(body);

    {
        mailtext_var few[] = {{"product_name", "x"}, {NULL, NULL}};
        int rc = mailtext_render(MAILTEXT_AD_PAUSE, few, &subject, &body, &err);
        ok(rc == RS_ERR && strstr(err.msg, "ad_pause") && strstr(err.msg, "{sku}") &&
               subject == NULL && body == NULL,
           "a missing value fails naming template and placeholder: %s", err.msg);
    }
    {
        mailtext_var nl[] = {{"product_name", "two\nlines"}, {"sku", "S\r\n1"}, {NULL, NULL}};
        char *line = NULL;
        ok(mailtext_render(MAILTEXT_AD_PAUSE, nl, &subject, &body, &err) == RS_ERR,
           "rendering needs every placeholder of the template");
        ok(mailtext_expand("{product_name}/{sku}", nl, &line, &err) == RS_OK,
           "expand fills a text");
        is_str(line, "two\nlines/S\r\n1", "values go into a body as they are");
        free(line);
    }
    ok(mailtext_expand("a {prodct_name} b", all_vars, &out, &err) == RS_ERR &&
           strstr(err.msg, "unknown placeholder {prodct_name}") && out == NULL,
       "an unknown placeholder fails: %s", err.msg);
    ok(mailtext_expand("a {sku", all_vars, &out, &err) == RS_ERR && strstr(err.msg, "unterminated"),
       "an unterminated placeholder fails: %s", err.msg);
    ok(mailtext_expand("{{sku} = {sku}", all_vars, &out, &err) == RS_OK, "{{ is allowed");
    is_str(out, "{sku} = CP-502101", "{{ is a literal brace");
    free(out);
    {
        mailtext_var empty[] = {{"sku", ""}, {"product_name", NULL}, {NULL, NULL}};
        ok(mailtext_expand("[{sku}|{product_name}]", empty, &out, &err) == RS_OK,
           "empty and NULL values are values");
        is_str(out, "[|]", "they render as nothing");
        free(out);
    }
    return done_testing();
}
