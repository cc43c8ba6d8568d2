/*
 * insn_gate: a QEMU TCG plugin that counts executed guest instructions only while a "gate" is
 * open, and attributes them to their addresses.
 *
 * The benchmark firmware (examples/firmware/bench) calls `bench_gate_on()` right before the
 * operation it measures and `bench_gate_off()` right after; everything in between, in whatever
 * function the compiler put it (inlined or not, interrupt handlers included), is counted, and
 * nothing else (start-up, the drain that empties the ring between iterations, semihosting).
 * The per-address counts let the host attribute the cost to functions and source lines.
 *
 * Like tools/insn-count, it declares the few QEMU 7.2 plugin API functions it uses by hand
 * (Debian ships no qemu-plugin.h). Counting is per executed instruction (a callback on each), so
 * it is exact and, under -icount, identical from run to run.
 *
 * Arguments (comma-separated after the .so path on -plugin):
 *   on=ADDR     the gate opens when the instruction at ADDR executes (it is counted)
 *   off=ADDR    the gate closes when the instruction at ADDR executes (it is not counted)
 *   out=PATH    where to write the result (required)
 *   pcs=1       also write one line per address executed while the gate was open
 *
 * Output:
 *   gated N        instructions executed while the gate was open
 *   opens N        times the gate opened
 *   total N        every instruction executed
 *   pc ADDR N      (with pcs=1) per address, hex
 *
 * Build: gcc -shared -fPIC -O2 -o libinsn_gate.so insn_gate.c
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
typedef struct qemu_info_t qemu_info_t;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* Per-address counts for code below 1 MiB (the flash of both emulated boards), halfword steps. */
#define PC_LIMIT 0x100000u
static uint64_t per_pc[PC_LIMIT / 2];

static uint64_t gate_on = UINT64_MAX, gate_off = UINT64_MAX;
static int gated, want_pcs;
static uint64_t n_gated, n_opens, n_total;
static char out_path[4096];

static void exec(unsigned int vcpu, void *udata)
{
    uint64_t pc = (uint64_t)(uintptr_t)udata;
    n_total++;
    if (pc == gate_on) {
        gated = 1;
        n_opens++;
    } else if (pc == gate_off) {
        gated = 0;
    }
    if (gated) {
        n_gated++;
        if (pc < PC_LIMIT) per_pc[pc / 2]++;
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        qemu_plugin_register_vcpu_insn_exec_cb(insn, exec, QEMU_PLUGIN_CB_NO_REGS,
                                               (void *)(uintptr_t)pc);
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    FILE *f = fopen(out_path, "w");
    if (!f) return;
    fprintf(f, "gated %" PRIu64 "\nopens %" PRIu64 "\ntotal %" PRIu64 "\n", n_gated, n_opens,
            n_total);
    if (want_pcs) {
        for (uint64_t i = 0; i < PC_LIMIT / 2; i++) {
            if (per_pc[i]) fprintf(f, "pc %" PRIx64 " %" PRIu64 "\n", i * 2, per_pc[i]);
        }
    }
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "on=", 3) == 0) {
            gate_on = strtoull(a + 3, NULL, 0);
        } else if (strncmp(a, "off=", 4) == 0) {
            gate_off = strtoull(a + 4, NULL, 0);
        } else if (strncmp(a, "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", a + 4);
        } else if (strcmp(a, "pcs=1") == 0) {
            want_pcs = 1;
        } else {
            fprintf(stderr, "insn_gate: unknown argument '%s' (on=ADDR, off=ADDR, out=PATH, pcs=1)\n", a);
            return -1;
        }
    }
    if (!out_path[0]) {
        fprintf(stderr, "insn_gate: out=PATH is required\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
