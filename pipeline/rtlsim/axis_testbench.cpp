// AXI-stream testbench for one FINN RTL layer compiled by Verilator (maskbnn rtlsim: pipeline/rtlsim/verilator.py).
//
// The layer is built with `--prefix Vdut`; every FINN layer has the same interface (ap_clk,
// ap_rst_n, in0_V and out0_V AXI streams), so one testbench serves all of them. FINN's RTL MVAU
// has a second input stream, in1_V, the weights (internal_decoupled mode), fed from a second
// file when one is given (without it in1_V stays idle: Thresholding_rtl's threshold-set select).
//   usage: sim <input.hex> <output.hex> <output beats per frame> <frames> <max cycles> [weights.hex]
// input.hex: one packed input beat per line (hex, as FINN's npy_to_rtlsim_input packs them).
// The input is offered back to back and the output is always ready, like FINN's own rtlsim.
// Printed on stdout (one JSON line): cycles until each frame's last output beat.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <type_traits>
#include <utility>
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

static std::vector<Words> read_hex(const char* path) {
    std::vector<Words> beats;
    std::ifstream f(path);
    for (std::string line; std::getline(f, line);)
        if (!line.empty()) beats.push_back(parse_hex(line));
    return beats;
}

// Whether the layer has the weight stream in1_V (a member test; a template, so the discarded
// branches below are never compiled for layers without it).
template <typename T, typename = void> struct HasWeights : std::false_type {};
template <typename T>
struct HasWeights<T, std::void_t<decltype(std::declval<T&>().in1_V_TVALID)>> : std::true_type {};

template <typename T> static void offer_weights(T& top, const std::vector<Words>& w, std::size_t next) {
    if constexpr (HasWeights<T>::value) {
        top.in1_V_TVALID = next < w.size();
        if (next < w.size()) put(top.in1_V_TDATA, w[next]);
    }
}
template <typename T> static bool weights_fire(T& top) {
    if constexpr (HasWeights<T>::value) return top.in1_V_TVALID && top.in1_V_TREADY;
    return false;
}

int main(int argc, char** argv) {
    if (argc != 6 && !(argc == 7 && HasWeights<Vdut>::value)) {
        std::cerr << "usage: " << argv[0] << " input.hex output.hex beats_per_frame frames max_cycles"
                  << (HasWeights<Vdut>::value ? " [weights.hex]" : "") << "\n";
        return 2;
    }
    const std::vector<Words> in = read_hex(argv[1]);
    const std::vector<Words> weights = argc > 6 ? read_hex(argv[6]) : std::vector<Words>();
    const long per_frame = std::atol(argv[3]);
    const long want = per_frame * std::atol(argv[4]);
    const long max_cycles = std::atol(argv[5]);

    VerilatedContext ctx;
    Vdut top(&ctx);
    top.ap_clk = 0;
    top.ap_rst_n = 0;
    top.in0_V_TVALID = 0;
    offer_weights(top, weights, weights.size());  // nothing valid during reset
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
    std::size_t next_in = 0, next_w = 0;
    long n_out = 0, cycle = 0, drain = 0;
    // Runs until the expected output arrived, then 64 more cycles: extra beats are written too,
    // so a layer that emits too much fails the comparison instead of passing unnoticed.
    while (cycle < max_cycles && drain < 64) {
        top.ap_clk = 0;
        top.in0_V_TVALID = next_in < in.size();
        if (next_in < in.size()) put(top.in0_V_TDATA, in[next_in]);
        offer_weights(top, weights, next_w);
        top.eval();
        const bool in_fire = top.in0_V_TVALID && top.in0_V_TREADY;
        const bool w_fire = weights_fire(top);
        const bool out_fire = top.out0_V_TVALID && top.out0_V_TREADY;
        if (out_fire) fout << hex_of(top.out0_V_TDATA) << "\n";
        top.ap_clk = 1;
        top.eval();
        ++cycle;
        if (in_fire) ++next_in;
        if (w_fire) ++next_w;
        if (out_fire && ++n_out % per_frame == 0) frame_done.push_back(cycle);
        if (n_out >= want) ++drain;
    }
    top.final();
    std::printf("{\"cycles\": %ld, \"beats_in\": %zu, \"beats_in_consumed\": %zu, "
                "\"weight_beats\": %zu, \"weight_beats_consumed\": %zu, "
                "\"beats_out\": %ld, \"frame_done\": [",
                cycle, in.size(), next_in, weights.size(), next_w, n_out);
    for (std::size_t i = 0; i < frame_done.size(); ++i)
        std::printf("%s%ld", i ? ", " : "", frame_done[i]);
    std::printf("], \"timeout\": %s}\n", n_out < want ? "true" : "false");
    return 0;
}
