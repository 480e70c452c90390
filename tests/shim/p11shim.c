/*
 * p11shim: a PKCS#11 module for tests that forwards every call to a real module and can
 * slow calls down, fail them or hold them. docs/testing.md describes its use; in short:
 *
 *   P11SHIM_TARGET    path of the real module (required), e.g. libsofthsm2.so
 *   P11SHIM_DELAY_US  microseconds added to every call that does cryptographic or
 *                     object work (read when the module loads and at C_Initialize)
 *   P11SHIM_CONTROL   a rules file, re-read whenever it changes (optional)
 *
 * Rules, one per line ('#' starts a comment):
 *
 *   delay_us N                   the delay of the delayed set (overrides the variable)
 *   delay_us C_Name N            a delay for one function, any function
 *   fail C_Name CKR_X            every call of C_Name returns CKR_X
 *   fail_next C_Name K CKR_X     the next K calls of C_Name return CKR_X
 *   hang C_Name                  calls of C_Name wait until this line is gone
 *
 * C_Name may be '*' (every function but C_GetFunctionList). CKR_X is a CKR_ name or a
 * number (0x30). A rewrite of the file re-arms its fail_next counts.
 *
 * Built by tests/shim/p11shim.rs; only C_GetFunctionList is exported. Compiled with
 * -DP11SHIM_CHECK_HEADER and the standard pkcs11.h on the include path, the same code
 * is checked against that header (function order, signatures, return-value numbers).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- PKCS#11 declarations ------------------------------------------------------- */

#ifdef P11SHIM_CHECK_HEADER
#include <pkcs11.h>
#include <stddef.h>
#else
/*
 * The little of PKCS#11 v2.40 that a forwarding module needs: scalar types, and
 * pointers to structures it never looks into (hence left incomplete). Names follow the
 * standard so that the header check above compiles the same text.
 */
typedef unsigned char CK_BYTE;
typedef unsigned char CK_BBOOL;
typedef unsigned char CK_UTF8CHAR;
typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef CK_ULONG CK_FLAGS;
typedef CK_ULONG CK_SLOT_ID;
typedef CK_ULONG CK_SESSION_HANDLE;
typedef CK_ULONG CK_OBJECT_HANDLE;
typedef CK_ULONG CK_USER_TYPE;
typedef CK_ULONG CK_MECHANISM_TYPE;
typedef CK_ULONG CK_NOTIFICATION;
typedef void *CK_VOID_PTR;
typedef CK_BYTE *CK_BYTE_PTR;
typedef CK_UTF8CHAR *CK_UTF8CHAR_PTR;
typedef CK_ULONG *CK_ULONG_PTR;
typedef CK_SLOT_ID *CK_SLOT_ID_PTR;
typedef CK_SESSION_HANDLE *CK_SESSION_HANDLE_PTR;
typedef CK_OBJECT_HANDLE *CK_OBJECT_HANDLE_PTR;
typedef CK_MECHANISM_TYPE *CK_MECHANISM_TYPE_PTR;
typedef struct CK_INFO *CK_INFO_PTR;
typedef struct CK_SLOT_INFO *CK_SLOT_INFO_PTR;
typedef struct CK_TOKEN_INFO *CK_TOKEN_INFO_PTR;
typedef struct CK_MECHANISM_INFO *CK_MECHANISM_INFO_PTR;
typedef struct CK_SESSION_INFO *CK_SESSION_INFO_PTR;
typedef struct CK_ATTRIBUTE *CK_ATTRIBUTE_PTR;
typedef struct CK_MECHANISM *CK_MECHANISM_PTR;
typedef CK_RV (*CK_NOTIFY)(CK_SESSION_HANDLE, CK_NOTIFICATION, CK_VOID_PTR);
typedef struct CK_VERSION {
    CK_BYTE major;
    CK_BYTE minor;
} CK_VERSION;
/* The list this module hands out has the layout of struct p11shim_list below. */
typedef struct p11shim_list CK_FUNCTION_LIST;
typedef CK_FUNCTION_LIST **CK_FUNCTION_LIST_PTR_PTR;
#define NULL_PTR ((void *)0)
#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_ARGUMENTS_BAD 0x7UL
#endif

/*
 * Every entry of CK_FUNCTION_LIST after `version`, in the standard's order:
 *   X(name, parameters, arguments, delayed, length_query, end_operation)
 * delayed:       1 when the call does cryptographic or object work, so that
 *                P11SHIM_DELAY_US (or `delay_us N`) applies to it.
 * length_query:  true when the call only asks for an output size: no delay then, since
 *                the token computes nothing (one delay per operation, not two).
 * end_operation: what ends the token's active operation after an injected failure. A
 *                real token ends an operation on any error of a call inside it; without
 *                this the next C_EncryptInit would meet CKR_OPERATION_ACTIVE, which no
 *                real token would answer there.
 * C_GetFunctionList is in the list but never wrapped: it returns this module's list.
 */
#define P11SHIM_FUNCTIONS(X)                                                                  \
    X(C_Initialize, (CK_VOID_PTR init_args), (init_args), 0, 0, (void)0)                      \
    X(C_Finalize, (CK_VOID_PTR reserved), (reserved), 0, 0, (void)0)                          \
    X(C_GetInfo, (CK_INFO_PTR info), (info), 0, 0, (void)0)                                   \
    X(C_GetFunctionList, (CK_FUNCTION_LIST_PTR_PTR list), (list), 0, 0, (void)0)              \
    X(C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR slots, CK_ULONG_PTR count),            \
      (present, slots, count), 0, 0, (void)0)                                                 \
    X(C_GetSlotInfo, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info), (slot, info), 0, 0, (void)0)   \
    X(C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info), 0, 0, (void)0) \
    X(C_GetMechanismList, (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count),  \
      (slot, list, count), 0, 0, (void)0)                                                     \
    X(C_GetMechanismInfo, (CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info), \
      (slot, type, info), 0, 0, (void)0)                                                      \
    X(C_InitToken,                                                                            \
      (CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label),        \
      (slot, pin, pin_len, label), 0, 0, (void)0)                                             \
    X(C_InitPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len),                \
      (s, pin, pin_len), 0, 0, (void)0)                                                       \
    X(C_SetPIN,                                                                               \
      (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len, CK_UTF8CHAR_PTR new_pin, \
       CK_ULONG new_len),                                                                     \
      (s, old_pin, old_len, new_pin, new_len), 0, 0, (void)0)                                 \
    X(C_OpenSession,                                                                          \
      (CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,                    \
       CK_SESSION_HANDLE_PTR out),                                                            \
      (slot, flags, app, notify, out), 0, 0, (void)0)                                         \
    X(C_CloseSession, (CK_SESSION_HANDLE s), (s), 0, 0, (void)0)                              \
    X(C_CloseAllSessions, (CK_SLOT_ID slot), (slot), 0, 0, (void)0)                           \
    X(C_GetSessionInfo, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info), (s, info), 0, 0,     \
      (void)0)                                                                                \
    X(C_GetOperationState, (CK_SESSION_HANDLE s, CK_BYTE_PTR state, CK_ULONG_PTR len),        \
      (s, state, len), 0, 0, (void)0)                                                         \
    X(C_SetOperationState,                                                                    \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR state, CK_ULONG len, CK_OBJECT_HANDLE enc_key,        \
       CK_OBJECT_HANDLE auth_key),                                                            \
      (s, state, len, enc_key, auth_key), 0, 0, (void)0)                                      \
    X(C_Login, (CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len), \
      (s, user, pin, pin_len), 0, 0, (void)0)                                                 \
    X(C_Logout, (CK_SESSION_HANDLE s), (s), 0, 0, (void)0)                                    \
    X(C_CreateObject,                                                                         \
      (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR out),     \
      (s, tmpl, n, out), 1, 0, (void)0)                                                       \
    X(C_CopyObject,                                                                           \
      (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,          \
       CK_OBJECT_HANDLE_PTR out),                                                             \
      (s, obj, tmpl, n, out), 1, 0, (void)0)                                                  \
    X(C_DestroyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj), (s, obj), 1, 0, (void)0)  \
    X(C_GetObjectSize, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj, CK_ULONG_PTR size),        \
      (s, obj, size), 0, 0, (void)0)                                                          \
    X(C_GetAttributeValue,                                                                    \
      (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n),         \
      (s, obj, tmpl, n), 0, 0, (void)0)                                                       \
    X(C_SetAttributeValue,                                                                    \
      (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n),         \
      (s, obj, tmpl, n), 0, 0, (void)0)                                                       \
    X(C_FindObjectsInit, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n),            \
      (s, tmpl, n), 0, 0, (void)0)                                                            \
    /* A failed C_FindObjects leaves the search open: the caller ends it with Final. */       \
    X(C_FindObjects,                                                                          \
      (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count),      \
      (s, out, max, count), 0, 0, (void)0)                                                    \
    X(C_FindObjectsFinal, (CK_SESSION_HANDLE s), (s), 0, 0, (void)0)                          \
    X(C_EncryptInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),      \
      (s, mech, key), 0, 0, (void)0)                                                          \
    X(C_Encrypt,                                                                              \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      drain_single(real.C_Encrypt, s, in, in_len))                                            \
    X(C_EncryptUpdate,                                                                        \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR, drain_final(real.C_EncryptFinal, s)) \
    X(C_EncryptFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len),           \
      (s, out, out_len), 1, out == NULL_PTR, drain_final(real.C_EncryptFinal, s))             \
    X(C_DecryptInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),      \
      (s, mech, key), 0, 0, (void)0)                                                          \
    X(C_Decrypt,                                                                              \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      drain_single(real.C_Decrypt, s, in, in_len))                                            \
    X(C_DecryptUpdate,                                                                        \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR, drain_final(real.C_DecryptFinal, s)) \
    X(C_DecryptFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len),           \
      (s, out, out_len), 1, out == NULL_PTR, drain_final(real.C_DecryptFinal, s))             \
    X(C_DigestInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech), (s, mech), 0, 0, (void)0)   \
    X(C_Digest,                                                                               \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      drain_single(real.C_Digest, s, in, in_len))                                             \
    X(C_DigestUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len), \
      1, 0, drain_final(real.C_DigestFinal, s))                                               \
    X(C_DigestKey, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key), (s, key), 1, 0,               \
      drain_final(real.C_DigestFinal, s))                                                     \
    X(C_DigestFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len),            \
      (s, out, out_len), 1, out == NULL_PTR, drain_final(real.C_DigestFinal, s))              \
    X(C_SignInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),         \
      (s, mech, key), 0, 0, (void)0)                                                          \
    X(C_Sign,                                                                                 \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      drain_single(real.C_Sign, s, in, in_len))                                               \
    X(C_SignUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len),  \
      1, 0, drain_final(real.C_SignFinal, s))                                                 \
    X(C_SignFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len),              \
      (s, out, out_len), 1, out == NULL_PTR, drain_final(real.C_SignFinal, s))                \
    X(C_SignRecoverInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),  \
      (s, mech, key), 0, 0, (void)0)                                                          \
    X(C_SignRecover,                                                                          \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      drain_single(real.C_SignRecover, s, in, in_len))                                        \
    X(C_VerifyInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key),       \
      (s, mech, key), 0, 0, (void)0)                                                          \
    /* Any answer of C_Verify or C_VerifyFinal ends the operation. */                         \
    X(C_Verify,                                                                               \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR sig,                 \
       CK_ULONG sig_len),                                                                     \
      (s, in, in_len, sig, sig_len), 1, 0, (void)real.C_Verify(s, in, in_len, sig, sig_len))  \
    X(C_VerifyUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len), \
      1, 0, end_verify(s))                                                                    \
    X(C_VerifyFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sig_len),                \
      (s, sig, sig_len), 1, 0, (void)real.C_VerifyFinal(s, sig, sig_len))                     \
    X(C_VerifyRecoverInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key), \
      (s, mech, key), 0, 0, (void)0)                                                          \
    X(C_VerifyRecover,                                                                        \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sig_len, CK_BYTE_PTR out,               \
       CK_ULONG_PTR out_len),                                                                 \
      (s, sig, sig_len, out, out_len), 1, out == NULL_PTR,                                    \
      drain_single(real.C_VerifyRecover, s, sig, sig_len))                                    \
    /* The dual-function updates run two operations; both end. */                            \
    X(C_DigestEncryptUpdate,                                                                  \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      (drain_final(real.C_EncryptFinal, s), drain_final(real.C_DigestFinal, s)))              \
    X(C_DecryptDigestUpdate,                                                                  \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      (drain_final(real.C_DecryptFinal, s), drain_final(real.C_DigestFinal, s)))              \
    X(C_SignEncryptUpdate,                                                                    \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      (drain_final(real.C_EncryptFinal, s), drain_final(real.C_SignFinal, s)))                \
    X(C_DecryptVerifyUpdate,                                                                  \
      (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,                 \
       CK_ULONG_PTR out_len),                                                                 \
      (s, in, in_len, out, out_len), 1, out == NULL_PTR,                                      \
      (drain_final(real.C_DecryptFinal, s), end_verify(s)))                                   \
    X(C_GenerateKey,                                                                          \
      (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,         \
       CK_OBJECT_HANDLE_PTR out),                                                             \
      (s, mech, tmpl, n, out), 1, 0, (void)0)                                                 \
    X(C_GenerateKeyPair,                                                                      \
      (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub_tmpl, CK_ULONG pub_n, \
       CK_ATTRIBUTE_PTR priv_tmpl, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR pub,                 \
       CK_OBJECT_HANDLE_PTR priv),                                                            \
      (s, mech, pub_tmpl, pub_n, priv_tmpl, priv_n, pub, priv), 1, 0, (void)0)                \
    X(C_WrapKey,                                                                              \
      (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping_key,             \
       CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len),                          \
      (s, mech, wrapping_key, key, out, out_len), 1, out == NULL_PTR, (void)0)                \
    X(C_UnwrapKey,                                                                            \
      (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping_key,           \
       CK_BYTE_PTR in, CK_ULONG in_len, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,                    \
       CK_OBJECT_HANDLE_PTR out),                                                             \
      (s, mech, unwrapping_key, in, in_len, tmpl, n, out), 1, 0, (void)0)                     \
    X(C_DeriveKey,                                                                            \
      (CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR tmpl, \
       CK_ULONG n, CK_OBJECT_HANDLE_PTR out),                                                 \
      (s, mech, base, tmpl, n, out), 1, 0, (void)0)                                           \
    X(C_SeedRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR seed, CK_ULONG len), (s, seed, len), 1, \
      0, (void)0)                                                                             \
    X(C_GenerateRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG len), (s, out, len),  \
      1, 0, (void)0)                                                                          \
    X(C_GetFunctionStatus, (CK_SESSION_HANDLE s), (s), 0, 0, (void)0)                         \
    X(C_CancelFunction, (CK_SESSION_HANDLE s), (s), 0, 0, (void)0)                            \
    X(C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved),        \
      (flags, slot, reserved), 0, 0, (void)0)

/* The function list, laid out as CK_FUNCTION_LIST. */
struct p11shim_list {
    CK_VERSION version;
#define FIELD(name, params, args, delayed, query, end) CK_RV(*name) params;
    P11SHIM_FUNCTIONS(FIELD)
#undef FIELD
};

/* Index of each function, for the rule tables. */
enum {
#define INDEX(name, params, args, delayed, query, end) IX_##name,
    P11SHIM_FUNCTIONS(INDEX)
#undef INDEX
    N_FUNCTIONS
};

static const char *const function_names[N_FUNCTIONS] = {
#define NAME(name, params, args, delayed, query, end) #name,
    P11SHIM_FUNCTIONS(NAME)
#undef NAME
};

/*
 * Return values the control file may name. Numbers are accepted as well; these are the
 * ones a fault test is likely to want.
 */
#define P11SHIM_RVS(X)                                                                   \
    X(CKR_CANCEL, 0x1UL) X(CKR_HOST_MEMORY, 0x2UL) X(CKR_SLOT_ID_INVALID, 0x3UL)         \
    X(CKR_GENERAL_ERROR, 0x5UL) X(CKR_FUNCTION_FAILED, 0x6UL)                            \
    X(CKR_ARGUMENTS_BAD, 0x7UL) X(CKR_CANT_LOCK, 0xAUL)                                  \
    X(CKR_ATTRIBUTE_VALUE_INVALID, 0x13UL) X(CKR_DATA_INVALID, 0x20UL)                   \
    X(CKR_DATA_LEN_RANGE, 0x21UL) X(CKR_DEVICE_ERROR, 0x30UL)                            \
    X(CKR_DEVICE_MEMORY, 0x31UL) X(CKR_DEVICE_REMOVED, 0x32UL)                           \
    X(CKR_ENCRYPTED_DATA_INVALID, 0x40UL) X(CKR_ENCRYPTED_DATA_LEN_RANGE, 0x41UL)        \
    X(CKR_FUNCTION_CANCELED, 0x50UL) X(CKR_FUNCTION_NOT_SUPPORTED, 0x54UL)               \
    X(CKR_KEY_HANDLE_INVALID, 0x60UL) X(CKR_KEY_SIZE_RANGE, 0x62UL)                      \
    X(CKR_MECHANISM_INVALID, 0x70UL) X(CKR_MECHANISM_PARAM_INVALID, 0x71UL)              \
    X(CKR_OBJECT_HANDLE_INVALID, 0x82UL) X(CKR_OPERATION_ACTIVE, 0x90UL)                 \
    X(CKR_OPERATION_NOT_INITIALIZED, 0x91UL) X(CKR_PIN_INCORRECT, 0xA0UL)                \
    X(CKR_PIN_LOCKED, 0xA4UL) X(CKR_SESSION_CLOSED, 0xB0UL) X(CKR_SESSION_COUNT, 0xB1UL) \
    X(CKR_SESSION_HANDLE_INVALID, 0xB3UL) X(CKR_SIGNATURE_INVALID, 0xC0UL)               \
    X(CKR_TOKEN_NOT_PRESENT, 0xE0UL) X(CKR_TOKEN_NOT_RECOGNIZED, 0xE1UL)                 \
    X(CKR_USER_ALREADY_LOGGED_IN, 0x100UL) X(CKR_USER_NOT_LOGGED_IN, 0x101UL)            \
    X(CKR_RANDOM_NO_RNG, 0x121UL) X(CKR_BUFFER_TOO_SMALL, 0x150UL)                       \
    X(CKR_CRYPTOKI_NOT_INITIALIZED, 0x190UL)

static const struct {
    const char *name;
    CK_RV value;
} rv_names[] = {
#define RV_ENTRY(name, value) {#name, value},
    P11SHIM_RVS(RV_ENTRY)
#undef RV_ENTRY
};

#ifdef P11SHIM_CHECK_HEADER
/* The checks that make this file's declarations trustworthy. */
#define SAME_ENTRY(name, params, args, delayed, query, end)                                \
    _Static_assert(offsetof(struct p11shim_list, name) == offsetof(CK_FUNCTION_LIST, name), \
                   #name " is out of order");                                              \
    _Static_assert(__builtin_types_compatible_p(__typeof__(((struct p11shim_list *)0)->name), \
                                                __typeof__(((CK_FUNCTION_LIST *)0)->name)), \
                   #name " has the wrong signature");
P11SHIM_FUNCTIONS(SAME_ENTRY)
_Static_assert(sizeof(struct p11shim_list) == sizeof(CK_FUNCTION_LIST), "list size");
#define SAME_RV(name, value) _Static_assert((name) == (value), #name " has the wrong value");
P11SHIM_RVS(SAME_RV)
#endif

/* ---- State ---------------------------------------------------------------------- */

/* The real module's list; written once under `loaded`, read-only afterwards. */
static struct p11shim_list real;
/* The list handed out: the real one with the wrappers in place. */
static struct p11shim_list ours;
static pthread_once_t loaded = PTHREAD_ONCE_INIT;
static CK_RV load_result = CKR_GENERAL_ERROR;

/* P11SHIM_DELAY_US; atomic because C_Initialize rewrites it while others may read it. */
static unsigned long env_delay_us;

/* The rules of the control file, all under `lock`. */
struct rules {
    long delay_us;                          /* `delay_us N`; -1: none */
    long fn_delay_us[N_FUNCTIONS];          /* `delay_us C_Name N`; -1: none */
    CK_RV fail[N_FUNCTIONS];                /* `fail`; CKR_OK: none */
    unsigned long fail_next[N_FUNCTIONS];   /* `fail_next`: calls left to fail */
    CK_RV fail_next_rv[N_FUNCTIONS];
    int hang[N_FUNCTIONS];                  /* `hang` */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *control_path; /* NULL: no control file, and no locking at all */
static struct rules rules;
/* What the file looked like when last read: any change means a rewrite. */
static struct file_id {
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
} seen;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Messages go to stderr, which the daemon's test harness keeps in its log. */
static void say(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "p11shim: %s\n", buf);
}

/* ---- The control file ----------------------------------------------------------- */

static void clear_rules(struct rules *r) {
    memset(r, 0, sizeof *r);
    r->delay_us = -1;
    for (int i = 0; i < N_FUNCTIONS; i++) r->fn_delay_us[i] = -1;
}

/* Parses a non-negative number (decimal, or hex with 0x); -1 when it is not one. */
static long parse_number(const char *s) {
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+') return -1;
    /* Base 10 unless 0x: strtoull's base 0 would read "010" as octal. */
    int base = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno != 0 || *end != '\0' || v > (unsigned long long)INT64_MAX / 2) return -1;
    return (long)v;
}

static int parse_rv(const char *s, CK_RV *out) {
    if (s == NULL) return 0;
    for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++) {
        if (strcmp(s, rv_names[i].name) == 0) {
            *out = rv_names[i].value;
            return 1;
        }
    }
    long v = parse_number(s);
    /* CKR_OK as a "failure" would skip the real call and pretend it worked. */
    if (v <= 0) return 0;
    *out = (CK_RV)v;
    return 1;
}

/* The function's index, N_FUNCTIONS for '*', or -1. */
static int parse_function(const char *s) {
    if (s == NULL) return -1;
    if (strcmp(s, "*") == 0) return N_FUNCTIONS;
    for (int i = 0; i < N_FUNCTIONS; i++) {
        if (i != IX_C_GetFunctionList && strcmp(s, function_names[i]) == 0) return i;
    }
    return -1;
}

/* Runs the statement that follows for the function's index, or for every index ('*'). */
#define FOR_TARGET(fn, i)                                                                  \
    for (int i = (fn) == N_FUNCTIONS ? 0 : (fn); i < ((fn) == N_FUNCTIONS ? N_FUNCTIONS : (fn) + 1); \
         i++)                                                                              \
        if (i != IX_C_GetFunctionList)

/* One line into `r`; 0 when it is not a rule. */
static int parse_line(char *line, struct rules *r) {
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char *save = NULL;
    char *word[5] = {0};
    int n = 0;
    for (char *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == 5) return 0;
        word[n++] = t;
    }
    if (n == 0) return 1;
    CK_RV rv;
    int fn;
    long v;
    if (strcmp(word[0], "delay_us") == 0 && n == 2 && (v = parse_number(word[1])) >= 0) {
        r->delay_us = v;
    } else if (strcmp(word[0], "delay_us") == 0 && n == 3 && (fn = parse_function(word[1])) >= 0 &&
               (v = parse_number(word[2])) >= 0) {
        FOR_TARGET(fn, i) r->fn_delay_us[i] = v;
    } else if (strcmp(word[0], "fail") == 0 && n == 3 && (fn = parse_function(word[1])) >= 0 &&
               parse_rv(word[2], &rv)) {
        FOR_TARGET(fn, i) r->fail[i] = rv;
    } else if (strcmp(word[0], "fail_next") == 0 && n == 4 &&
               (fn = parse_function(word[1])) >= 0 && (v = parse_number(word[2])) >= 0 &&
               parse_rv(word[3], &rv)) {
        FOR_TARGET(fn, i) {
            r->fail_next[i] = (unsigned long)v;
            r->fail_next_rv[i] = rv;
        }
    } else if (strcmp(word[0], "hang") == 0 && n == 2 && (fn = parse_function(word[1])) >= 0) {
        FOR_TARGET(fn, i) r->hang[i] = 1;
    } else {
        return 0;
    }
    return 1;
}

static int same_file(const struct file_id *a, const struct file_id *b) {
    if (a->exists != b->exists) return 0;
    if (!a->exists) return 1;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static struct file_id file_id_of(const struct stat *st) {
    struct file_id id = {1, st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim};
    return id;
}

/*
 * Re-reads the control file if it changed since the last look. Called with `lock` held.
 * A stat per call costs under a microsecond (docs/testing.md), far below a token call.
 * The identity recorded is the one of the file actually read (fstat on the open file),
 * so that content and identity belong together: a rewrite during the read is read on
 * the next call, and no version is read twice (which would re-arm its fail_next counts).
 */
static void refresh_locked(void) {
    struct stat st;
    struct file_id now = {0};
    if (stat(control_path, &st) == 0) now = file_id_of(&st);
    if (same_file(&now, &seen)) return;
    struct rules fresh;
    clear_rules(&fresh);
    FILE *f = now.exists ? fopen(control_path, "r") : NULL;
    if (f != NULL) {
        if (fstat(fileno(f), &st) == 0) now = file_id_of(&st);
        char line[512];
        int line_no = 0;
        while (fgets(line, sizeof line, f)) {
            line_no++;
            char copy[512];
            snprintf(copy, sizeof copy, "%s", line);
            if (!parse_line(line, &fresh)) {
                copy[strcspn(copy, "\r\n")] = '\0';
                say("%s:%d: not a rule, ignored: %s", control_path, line_no, copy);
            }
        }
        fclose(f);
    } else {
        now.exists = 0;
    }
    rules = fresh;
    seen = now;
}

/* ---- Interception --------------------------------------------------------------- */

static void sleep_us(unsigned long us) {
    if (us == 0) return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(us / 1000000);
    until.tv_nsec += (long)(us % 1000000) * 1000;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* Absolute, so that a signal does not stretch or cut the delay. */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
    }
}

/*
 * What happens to one call before it reaches the real module: it may wait while a
 * `hang` rule names it, sleep its delay, then either go on (CKR_OK) or fail with the
 * returned value.
 */
static CK_RV intercept(int fn, int delayed, int length_query) {
    unsigned long delay = delayed ? __atomic_load_n(&env_delay_us, __ATOMIC_RELAXED) : 0;
    CK_RV rv = CKR_OK;
    if (control_path != NULL) {
        int announced = 0;
        pthread_mutex_lock(&lock);
        for (;;) {
            refresh_locked();
            if (!rules.hang[fn]) break;
            if (!announced) say("%s held by a hang rule", function_names[fn]);
            announced = 1;
            pthread_mutex_unlock(&lock);
            sleep_us(10000);
            pthread_mutex_lock(&lock);
        }
        if (announced) say("%s released", function_names[fn]);
        if (delayed && rules.delay_us >= 0) delay = (unsigned long)rules.delay_us;
        if (rules.fn_delay_us[fn] >= 0) delay = (unsigned long)rules.fn_delay_us[fn];
        if (rules.fail_next[fn] > 0) {
            rules.fail_next[fn]--;
            rv = rules.fail_next_rv[fn];
        } else if (rules.fail[fn] != CKR_OK) {
            rv = rules.fail[fn];
        }
        pthread_mutex_unlock(&lock);
    }
    if (!length_query) sleep_us(delay);
    if (rv != CKR_OK) say("%s fails with 0x%lx (injected)", function_names[fn], rv);
    return rv;
}

typedef CK_RV (*single_part_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR,
                                CK_ULONG_PTR);
typedef CK_RV (*final_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);

/* Output the caller never sees; wiped because it may be plaintext. */
static void discard(CK_BYTE_PTR buf, CK_ULONG len) {
    explicit_bzero(buf, len);
    free(buf);
}

/* Runs a single-part call to its end in the real module, into a scratch buffer. */
static void drain_single(single_part_fn f, CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len) {
    CK_ULONG len = 0;
    if (f == NULL || f(s, in, in_len, NULL_PTR, &len) != CKR_OK) return; /* ended already */
    CK_BYTE_PTR buf = malloc(len + 1);
    if (buf == NULL) return;
    CK_ULONG got = len;
    (void)f(s, in, in_len, buf, &got);
    discard(buf, len + 1);
}

/* Ends a multi-part operation with its Final call, into a scratch buffer. */
static void drain_final(final_fn f, CK_SESSION_HANDLE s) {
    CK_ULONG len = 0;
    if (f == NULL || f(s, NULL_PTR, &len) != CKR_OK) return;
    CK_BYTE_PTR buf = malloc(len + 1);
    if (buf == NULL) return;
    CK_ULONG got = len;
    (void)f(s, buf, &got);
    discard(buf, len + 1);
}

/* Ends a verification: C_VerifyFinal ends it whatever the signature. */
static void end_verify(CK_SESSION_HANDLE s) {
    CK_BYTE none[1] = {0};
    if (real.C_VerifyFinal != NULL) (void)real.C_VerifyFinal(s, none, 0);
}

/* The wrappers: intercept, then either the injected failure or the real call. */
#define WRAPPER(name, params, args, delayed, length_query, end_operation) \
    static CK_RV w_##name params {                                        \
        CK_RV injected = intercept(IX_##name, delayed, length_query);     \
        if (injected != CKR_OK) {                                         \
            end_operation;                                                \
            return injected;                                              \
        }                                                                 \
        return real.name args;                                            \
    }
P11SHIM_FUNCTIONS(WRAPPER)
#undef WRAPPER

/* ---- Loading -------------------------------------------------------------------- */

static void read_delay_env(void) {
    const char *s = getenv("P11SHIM_DELAY_US");
    long v = (s == NULL || *s == '\0') ? 0 : parse_number(s);
    if (v < 0) {
        say("P11SHIM_DELAY_US=%s is not a number of microseconds; no delay", s);
        v = 0;
    }
    __atomic_store_n(&env_delay_us, (unsigned long)v, __ATOMIC_RELAXED);
}

/* C_Initialize is where an application expects settings to be taken. */
static CK_RV shim_initialize(CK_VOID_PTR init_args) {
    read_delay_env();
    return w_C_Initialize(init_args);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

/*
 * False when the module exports `name` and its list holds something else there.
 * C_GetFunctionList is left out: the exported one may be a wrapper of the function the
 * list holds (kryoptic's is), and the shim never calls the list's entry.
 */
static int in_place(void *lib, const char *name, void *in_list) {
    if (strcmp(name, "C_GetFunctionList") == 0) return 1;
    void *by_name = dlsym(lib, name);
    return by_name == NULL || in_list == NULL || by_name == in_list;
}

static void load(void) {
    read_delay_env();
    const char *c = getenv("P11SHIM_CONTROL");
    if (c != NULL && *c != '\0') {
        control_path = strdup(c);
        clear_rules(&rules);
    }
    const char *target = getenv("P11SHIM_TARGET");
    if (target == NULL || *target == '\0') {
        say("P11SHIM_TARGET is not set: no module to forward to");
        return;
    }
    /* RTLD_LOCAL: the real module's C_ symbols must not shadow this module's. */
    void *lib = dlopen(target, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        say("cannot load %s: %s", target, dlerror());
        return;
    }
    CK_RV (*get_list)(struct p11shim_list **) =
        (CK_RV(*)(struct p11shim_list **))dlsym(lib, "C_GetFunctionList");
    struct p11shim_list *list = NULL;
    CK_RV rv = get_list ? get_list(&list) : CKR_GENERAL_ERROR;
    if (rv != CKR_OK || list == NULL) {
        say("%s: C_GetFunctionList failed (0x%lx)", target, rv);
        return;
    }
    real = *list;
    /*
     * The layout check that needs no header: a module that also exports its functions
     * by name must have each one where this file expects it in its list.
     */
#define CHECK_PLACE(name, params, args, delayed, query, end)                          \
    if (!in_place(lib, #name, (void *)real.name)) {                                 \
        say("%s is not where p11shim expects it in the function list of %s", #name, \
            target);                                                                \
        return;                                                                     \
    }
    P11SHIM_FUNCTIONS(CHECK_PLACE)
#undef CHECK_PLACE
    ours.version.major = 2;
    ours.version.minor = 40;
    /* A function the real module lacks stays NULL, as the real list has it. */
#define INSTALL(name, params, args, delayed, query, end) ours.name = real.name ? w_##name : NULL;
    P11SHIM_FUNCTIONS(INSTALL)
#undef INSTALL
    ours.C_Initialize = real.C_Initialize ? shim_initialize : NULL;
    ours.C_GetFunctionList = C_GetFunctionList;
    load_result = CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
    if (list == NULL_PTR) return CKR_ARGUMENTS_BAD;
    pthread_once(&loaded, load);
    if (load_result != CKR_OK) return load_result;
    *list = (CK_FUNCTION_LIST *)(void *)&ours;
    return CKR_OK;
}
