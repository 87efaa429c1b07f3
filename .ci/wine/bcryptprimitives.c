/*
 * A stand-in for bcryptprimitives.dll, for running sockconform's Windows build under Wine 8 only.
 *
 * Rust's standard library (1.78 and later) draws its random numbers from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10 and later export and Wine 8 does not have at all, so a
 * Rust program under Wine 8 fails to start (a missing import). This DLL exports ProcessPrng and
 * answers it with RtlGenRandom (advapi32's SystemFunction036), which Wine does have. Placed next
 * to the .exe files, it is found first by the DLL search order. It never ships: .ci/wine-smoke
 * builds it into target/wine.
 */
#include <windows.h>

/* RtlGenRandom: declared here because ntsecapi.h only declares it under its SystemFunction036
 * name behind a macro. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* ProcessPrng (bcryptprimitives.h): fill `data` with `len` random bytes; documented to always
 * return TRUE. RtlGenRandom takes a ULONG length, so a larger request is served in chunks. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
