/* Forced-include header (gcc -include) for cross-compiling llama.cpp with mingw-w64 10, whose
 * headers declare SetThreadInformation and the ThreadPowerThrottling class but not the
 * THREAD_POWER_THROTTLING_STATE structure that ggml-cpu.c fills (Windows SDK: processthreadsapi.h).
 * build_llama.sh uses it only when a test compile shows the structure missing.
 * No windows.h here: every C file of ggml and llama gets this header first. */
#if defined(_WIN32) && !defined(THREAD_POWER_THROTTLING_CURRENT_VERSION)
typedef struct _THREAD_POWER_THROTTLING_STATE {
    unsigned long Version;     /* ULONG (32 bits on Win64) */
    unsigned long ControlMask;
    unsigned long StateMask;
} THREAD_POWER_THROTTLING_STATE, *PTHREAD_POWER_THROTTLING_STATE;
#define THREAD_POWER_THROTTLING_CURRENT_VERSION 1
#define THREAD_POWER_THROTTLING_EXECUTION_SPEED 0x1
#define THREAD_POWER_THROTTLING_VALID_FLAGS (THREAD_POWER_THROTTLING_EXECUTION_SPEED)
#endif
