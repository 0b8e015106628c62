/* A stand-in for Windows 10's system icuuc.dll, for running Qt under Wine ONLY. Never shipped.
 *
 * Qt 6.11's QtCore for Windows imports its optional ICU text converters (QStringConverter for
 * encodings beyond UTF-8/16/32 and Latin-1) from the system's icuuc.dll, which every Windows 10
 * (1903+) and 11 has and Wine 8 lacks, so Qt6Core.dll does not load under Wine without it.
 * Every function here behaves as an ICU with no converters: opening one fails with
 * U_FILE_ACCESS_ERROR, the list of converters is empty, and calls that need an open converter
 * (never reached, since none opens) report U_UNSUPPORTED_ERROR or do nothing.
 * packaging/windows/wine_prefix.sh builds it with mingw-w64 and checks that it exports every
 * icuuc function Qt6Core.dll imports. */
#include <stddef.h>
#include <stdint.h>

#define EXPORT __declspec(dllexport)
typedef int UErrorCode;                  /* ICU's enum; > 0 is a failure */
enum { U_FILE_ACCESS_ERROR = 4, U_UNSUPPORTED_ERROR = 16 };

static void fail(UErrorCode *err, UErrorCode code) {
    if (err && *err <= 0) *err = code;
}

EXPORT void *ucnv_open(const char *name, UErrorCode *err) { (void) name; fail(err, U_FILE_ACCESS_ERROR); return NULL; }
EXPORT void ucnv_close(void *cnv) { (void) cnv; }
EXPORT void ucnv_reset(void *cnv) { (void) cnv; }
EXPORT int8_t ucnv_getMaxCharSize(const void *cnv) { (void) cnv; return 1; }
EXPORT const char *ucnv_getName(const void *cnv, UErrorCode *err) { (void) cnv; fail(err, U_UNSUPPORTED_ERROR); return NULL; }
EXPORT void ucnv_getToUCallBack(const void *cnv, void **action, const void **context) {
    (void) cnv; if (action) *action = NULL; if (context) *context = NULL;
}
EXPORT void ucnv_getFromUCallBack(const void *cnv, void **action, const void **context) {
    (void) cnv; if (action) *action = NULL; if (context) *context = NULL;
}
EXPORT void ucnv_setToUCallBack(void *cnv, void *action, const void *context, void **old_action,
                                const void **old_context, UErrorCode *err) {
    (void) cnv; (void) action; (void) context; (void) old_action; (void) old_context;
    fail(err, U_UNSUPPORTED_ERROR);
}
EXPORT void ucnv_setFromUCallBack(void *cnv, void *action, const void *context, void **old_action,
                                  const void **old_context, UErrorCode *err) {
    (void) cnv; (void) action; (void) context; (void) old_action; (void) old_context;
    fail(err, U_UNSUPPORTED_ERROR);
}
EXPORT void UCNV_FROM_U_CALLBACK_SUBSTITUTE(const void *context, void *args, const void *units,
                                            int32_t length, int32_t code_point, int reason,
                                            UErrorCode *err) {
    (void) context; (void) args; (void) units; (void) length; (void) code_point; (void) reason;
    fail(err, U_UNSUPPORTED_ERROR);
}
EXPORT void UCNV_TO_U_CALLBACK_SUBSTITUTE(const void *context, void *args, const char *units,
                                          int32_t length, int reason, UErrorCode *err) {
    (void) context; (void) args; (void) units; (void) length; (void) reason;
    fail(err, U_UNSUPPORTED_ERROR);
}
EXPORT void ucnv_cbToUWriteUChars(void *args, const void *source, int32_t length, int32_t offset,
                                  UErrorCode *err) {
    (void) args; (void) source; (void) length; (void) offset; fail(err, U_UNSUPPORTED_ERROR);
}
EXPORT void ucnv_cbFromUWriteUChars(void *args, const void **source, const void *limit,
                                    int32_t offset, UErrorCode *err) {
    (void) args; (void) source; (void) limit; (void) offset; fail(err, U_UNSUPPORTED_ERROR);
}
EXPORT void ucnv_toUnicode(void *cnv, void **target, const void *target_limit, const char **source,
                           const char *source_limit, int32_t *offsets, int8_t flush, UErrorCode *err) {
    (void) cnv; (void) target; (void) target_limit; (void) source; (void) source_limit;
    (void) offsets; (void) flush; fail(err, U_UNSUPPORTED_ERROR);
}
EXPORT void ucnv_fromUnicode(void *cnv, char **target, const char *target_limit, const void **source,
                             const void *source_limit, int32_t *offsets, int8_t flush, UErrorCode *err) {
    (void) cnv; (void) target; (void) target_limit; (void) source; (void) source_limit;
    (void) offsets; (void) flush; fail(err, U_UNSUPPORTED_ERROR);
}
EXPORT int32_t ucnv_toUCountPending(const void *cnv, UErrorCode *err) { (void) cnv; fail(err, U_UNSUPPORTED_ERROR); return 0; }
EXPORT int32_t ucnv_fromUCountPending(const void *cnv, UErrorCode *err) { (void) cnv; fail(err, U_UNSUPPORTED_ERROR); return 0; }
EXPORT const char *ucnv_getStandardName(const char *name, const char *standard, UErrorCode *err) {
    (void) name; (void) standard; fail(err, U_FILE_ACCESS_ERROR); return NULL;
}
EXPORT const char *ucnv_getAvailableName(int32_t n) { (void) n; return NULL; }
EXPORT int32_t ucnv_countAvailable(void) { return 0; }
