/*
 * insn_count: a QEMU TCG plugin that counts executed guest instructions, exactly.
 *
 * Debian's QEMU 7.2 supports plugins but ships no <qemu-plugin.h>, so the few API functions used
 * here are declared by hand, matching QEMU 7.2's include/qemu/qemu-plugin.h (API version 1).
 *
 * Every translated instruction gets an inline "add 1" to a counter, so the count is per executed
 * instruction (exact and identical run to run), not per translation block (which over-counts
 * when a block is left early, e.g. by an exception).
 *
 * Arguments (comma-separated after the .so path on -plugin):
 *   range=LO-HI   also count instructions whose address is in [LO, HI) (hex with 0x or decimal);
 *                 may be given up to 16 times, each range gets its own counter
 *   out=PATH      write the result to PATH instead of QEMU's log (-d plugin -D FILE)
 *
 * Output, one line each, at exit (also when the guest exits through semihosting):
 *   total N
 *   range LO HI N
 *
 * Build: gcc -shared -fPIC -O2 -o libinsn_count.so insn_count.c
 * Run:   qemu-system-arm ... -plugin ./libinsn_count.so,range=0x100-0x200,out=counts.txt
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t; /* only passed through, never read */

/* enum qemu_plugin_op in QEMU 7.2 */
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

#define MAX_RANGES 16

/* Single vCPU (Cortex-M machines): plain counters, no atomics needed. */
static uint64_t total;
static uint64_t lo[MAX_RANGES], hi[MAX_RANGES], in_range[MAX_RANGES];
static int n_ranges;
static char out_path[4096];

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &total, 1);
        for (int r = 0; r < n_ranges; r++) {
            if (pc >= lo[r] && pc < hi[r]) {
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                           &in_range[r], 1);
            }
        }
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    char buf[128];
    FILE *f = out_path[0] ? fopen(out_path, "w") : NULL;
    snprintf(buf, sizeof buf, "total %" PRIu64 "\n", total);
    if (f) fputs(buf, f); else qemu_plugin_outs(buf);
    for (int r = 0; r < n_ranges; r++) {
        snprintf(buf, sizeof buf, "range 0x%" PRIx64 " 0x%" PRIx64 " %" PRIu64 "\n", lo[r], hi[r],
                 in_range[r]);
        if (f) fputs(buf, f); else qemu_plugin_outs(buf);
    }
    if (f) fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "range=", 6) == 0) {
            char *end;
            if (n_ranges == MAX_RANGES) {
                fprintf(stderr, "insn_count: at most %d ranges\n", MAX_RANGES);
                return -1;
            }
            lo[n_ranges] = strtoull(a + 6, &end, 0);
            if (*end != '-') {
                fprintf(stderr, "insn_count: bad range '%s' (want range=LO-HI)\n", a);
                return -1;
            }
            hi[n_ranges] = strtoull(end + 1, &end, 0);
            if (*end != '\0' || hi[n_ranges] <= lo[n_ranges]) {
                fprintf(stderr, "insn_count: bad range '%s' (want range=LO-HI, LO < HI)\n", a);
                return -1;
            }
            n_ranges++;
        } else if (strncmp(a, "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", a + 4);
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (range=LO-HI, out=PATH)\n", a);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
