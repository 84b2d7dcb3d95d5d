// AXI-stream testbench for one FINN RTL layer compiled by Verilator (maskbnn rtlsim: pipeline/rtlsim/verilator.py).
//
// The layer is built with `--prefix Vdut`; every FINN layer has the same interface (ap_clk,
// ap_rst_n, in0_V and out0_V AXI streams), so one testbench serves all of them.
//   usage: sim <input.hex> <output.hex> <output beats per frame> <frames> <max cycles>
// input.hex: one packed input beat per line (hex, as FINN's npy_to_rtlsim_input packs them).
// The input is offered back to back and the output is always ready, like FINN's own rtlsim.
// Printed on stdout (one JSON line): cycles until each frame's last output beat.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "Vdut.h"
#include "verilated.h"

typedef std::vector<uint32_t> Words;  // little-endian 32-bit words of one beat

static Words parse_hex(const std::string& s) {
    Words w;
    std::string h = s;
    if (h.rfind("0x", 0) == 0) h = h.substr(2);
    for (int end = (int)h.size(); end > 0; end -= 8) {
        int start = end - 8 < 0 ? 0 : end - 8;
        w.push_back((uint32_t)std::stoul(h.substr(start, end - start), nullptr, 16));
    }
    return w;
}

// Ports up to 64 bits are integers in Verilator, wider ones VlWide<N> (N 32-bit words).
template <typename T> static void put(T& port, const Words& w) {
    uint64_t v = (w.size() > 0 ? w[0] : 0) | ((uint64_t)(w.size() > 1 ? w[1] : 0) << 32);
    port = (T)v;
}
template <std::size_t N> static void put(VlWide<N>& port, const Words& w) {
    for (std::size_t k = 0; k < N; ++k) port[k] = k < w.size() ? w[k] : 0;
}
template <typename T> static std::string hex_of(const T& port) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llx", (unsigned long long)port);
    return buf;
}
template <std::size_t N> static std::string hex_of(const VlWide<N>& port) {
    std::string s;
    char buf[16];
    for (std::size_t k = N; k-- > 0;) {
        std::snprintf(buf, sizeof buf, "%08x", (unsigned)port[k]);
        s += buf;
    }
    return s;
}

int main(int argc, char** argv) {
    if (argc != 6) {
        std::cerr << "usage: " << argv[0]
                  << " input.hex output.hex beats_per_frame frames max_cycles\n";
        return 2;
    }
    std::vector<Words> in;
    std::ifstream fin(argv[1]);
    for (std::string line; std::getline(fin, line);)
        if (!line.empty()) in.push_back(parse_hex(line));
    const long per_frame = std::atol(argv[3]);
    const long want = per_frame * std::atol(argv[4]);
    const long max_cycles = std::atol(argv[5]);

    VerilatedContext ctx;
    Vdut top(&ctx);
    top.ap_clk = 0;
    top.ap_rst_n = 0;
    top.in0_V_TVALID = 0;
    top.out0_V_TREADY = 1;
    for (int i = 0; i < 16; ++i) {  // synchronous reset, active low
        top.ap_clk = 0;
        top.eval();
        top.ap_clk = 1;
        top.eval();
    }
    top.ap_rst_n = 1;

    std::ofstream fout(argv[2]);
    std::vector<long> frame_done;  // cycle (1-based) of each frame's last output beat
    std::size_t next_in = 0;
    long n_out = 0, cycle = 0, drain = 0;
    // Runs until the expected output arrived, then 64 more cycles: extra beats are written too,
    // so a layer that emits too much fails the comparison instead of passing unnoticed.
    while (cycle < max_cycles && drain < 64) {
        top.ap_clk = 0;
        top.in0_V_TVALID = next_in < in.size();
        if (next_in < in.size()) put(top.in0_V_TDATA, in[next_in]);
        top.eval();
        const bool in_fire = top.in0_V_TVALID && top.in0_V_TREADY;
        const bool out_fire = top.out0_V_TVALID && top.out0_V_TREADY;
        if (out_fire) fout << hex_of(top.out0_V_TDATA) << "\n";
        top.ap_clk = 1;
        top.eval();
        ++cycle;
        if (in_fire) ++next_in;
        if (out_fire && ++n_out % per_frame == 0) frame_done.push_back(cycle);
        if (n_out >= want) ++drain;
    }
    top.final();
    std::printf("{\"cycles\": %ld, \"beats_in\": %zu, \"beats_in_consumed\": %zu, "
                "\"beats_out\": %ld, \"frame_done\": [",
                cycle, in.size(), next_in, n_out);
    for (std::size_t i = 0; i < frame_done.size(); ++i)
        std::printf("%s%ld", i ? ", " : "", frame_done[i]);
    std::printf("], \"timeout\": %s}\n", n_out < want ? "true" : "false");
    return 0;
}
