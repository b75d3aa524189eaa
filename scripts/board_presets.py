"""Write the board presets of ``iopopt/conf/cluster/`` (roofline devices with the source of every number).

Each board has anchor figures -- its conv rate, memory bandwidth, per-operator overhead and memory -- from a public
benchmark or a datasheet where one was found, else an estimate saying how it was derived. Its per-kind rates and
bandwidths are estimates derived from a reference ``iopopt profile`` of an x86 machine: a kind's rate keeps its
ratio to the conv rate, a kind's bandwidth keeps its ratio to the conv rate when it is a compute-efficiency figure
(below half the memory bandwidth: pooling, depthwise and low-intensity convs) and to the memory bandwidth otherwise
(elementwise kinds, linear layers; at most the board's memory bandwidth, since what beat memory on the
reference came from its large caches). That transfer is the weakest part of these presets (x86 AVX-512 kernels are not
NEON ones); measure your own boards with ``iopopt profile``. Power figures (DESIGN §4: the whole board's draw while
computing, idle, sending and receiving) come from public measurements where one was found and are estimates
otherwise, each labelled; the transmit/receive figures are a Wi-Fi radio's (they overstate a wired link's). The
weight pass of a row share (``weight_bytes_per_s``) keeps its ratio to the conv rate, from the reference profile or,
with ``--weight-pass DIR``, from another profile of the same machine that measured it. Run from the repository
root::

    .venv/bin/python scripts/board_presets.py PROFILE_DIR [--weight-pass PROFILE_DIR]

The committed presets: the 2026-12-02 14:06 reference profile (``git show
37392bb:outputs/reference/roofline/profile/profile.json``) with ``--weight-pass outputs/reference/roofline/row_shares``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "iopopt" / "conf" / "cluster"

# A 2.4 GHz Wi-Fi radio's draw on top of idle: no measurement of a Pi's radio alone was found, so every board's
# transmit/receive increments are taken from Espressif's ESP32 datasheet ("Current Consumption Depending on RF
# Modes": TX 802.11n HT20 MCS7 178 mA, RX 110 mA, at 3.3 V), the one radio with public figures at hand.
RADIO_TX_W, RADIO_RX_W = 0.178 * 3.3, 0.110 * 3.3
RADIO_NOTE = ("estimate: idle plus a 2.4 GHz radio's draw, transmit 0.59 W / receive 0.36 W (ESP32 datasheet, "
              "'Current Consumption Depending on RF Modes': TX 802.11n HT20 MCS7 178 mA, RX 110 mA at 3.3 V; no "
              "measurement of this board's radio alone found); a Wi-Fi figure, so it overstates a wired link")
PI4_STREAM = "STREAM copy 5527 MB/s, scale 5562 MB/s, single thread, on a Pi 4 (https://www.sci-pi.org.uk/bench/stream.html)"
BOARDS = {
    "rpi4": {
        "title": "Raspberry Pi 4 Model B (BCM2711, 4x Cortex-A72 @ 1.5 GHz, 4 GB LPDDR4-3200), PyTorch on 4 threads",
        "flops_per_s": (8.0e9, "estimate, kept from the first release: HPL Linpack (fp64, 4 cores) reaches about "
                               "8 GFLOP/s on a Pi 4 (https://feiereisen.net/?page_id=924); fp32 convs in PyTorch are "
                               "taken to reach about the same"),
        "memory_bandwidth_bytes_per_s": (5.5e9, f"source: {PI4_STREAM}"),
        "op_overhead_s": (1.0e-4, "estimate, kept from the first release (framework cost per operator)"),
        "memory_bytes": (3.0e9, "assumption: 3 GB of the 4 GB free for the model"),
        "active_power_w": (5.0, "source: 5.0 W at the wall under stress-ng --matrix 0 (all four cores), Pi 4 "
                                "Model B Rev 1.4 (https://github.com/geerlingguy/sbc-reviews/issues/4)"),
        "idle_power_w": (1.6, "source: 1.6 W idle at the wall, same board and page"),
    },
    "rpi5": {
        "title": "Raspberry Pi 5 (BCM2712, 4x Cortex-A76 @ 2.4 GHz, 4 GB LPDDR4X-4267), PyTorch on 4 threads",
        "flops_per_s": (1.48e10, "estimate: the Pi 4's 8 GFLOP/s x 1.85, the Pi 5 / Pi 4 ratio of sysbench CPU "
                                 "events/s (1 thread 2737 vs 1478, 4 threads 10945 vs 5901, "
                                 "https://leoncode.co.uk/articles/raspberry-pi-benchmarks)"),
        "memory_bandwidth_bytes_per_s": (7.3e9, f"estimate: the Pi 4's STREAM ({PI4_STREAM.split(', single')[0]}) x "
                                                "4267/3200, the ratio of the RAM transfer rates (Pi 5 LPDDR4X-4267 "
                                                "vs Pi 4 LPDDR4-3200: https://forum.digikey.com/t/raspberry-pi-5-vs-"
                                                "other-models-evaluation-test/53405)"),
        "op_overhead_s": (5.4e-5, "estimate: the Pi 4's 0.1 ms / 1.85 (the sysbench ratio)"),
        "memory_bytes": (3.0e9, "assumption: 3 GB of the 4 GB free for the model"),
        "active_power_w": (11.0, "source: 11 W at the wall running HPL on all four cores at 2.4 GHz "
                                 "(30.249 GFLOP/s at 11 W, https://github.com/geerlingguy/top500-benchmark/issues/18)"),
        "idle_power_w": (3.1, "estimate: the Raspberry Pi 500's idle draw at the wall, 3.1 W (the same BCM2712 "
                              "at 2.4 GHz, https://github.com/geerlingguy/sbc-reviews/issues/60)"),
    },
    "jetson_nano_cpu": {
        "title": "NVIDIA Jetson Nano, CPU only (4x Cortex-A57 @ 1.43 GHz, 4 GB 64-bit LPDDR4, 25.6 GB/s nominal), "
                 "PyTorch on 4 threads; the GPU is not modelled",
        "flops_per_s": (5.3e9, "estimate: the Pi 4's 8 GFLOP/s x 1.43/1.5 (clock) x 0.7 (A57 vs A72 per clock; no "
                               "public fp32 conv benchmark found)"),
        "memory_bandwidth_bytes_per_s": (1.1e10, "estimate: 25.6 GB/s nominal (NVIDIA's Jetson Nano specification, "
                                                 "4 GB 64-bit LPDDR4, as quoted in a repost of Fastvideo's Jetson "
                                                 "Nano benchmarks: https://cfanz.cn/resource/detail/nlwoMoMrjrkMn) "
                                                 "x 0.43, the Pi 4's measured-STREAM / nominal ratio (5.5 / 12.8, "
                                                 "nominal = 32-bit LPDDR4-3200)"),
        "op_overhead_s": (1.5e-4, "estimate: the Pi 4's 0.1 ms x 8 / 5.3 (the conv-rate ratio)"),
        "memory_bytes": (2.5e9, "assumption: 2.5 GB of the 4 GB (shared with the GPU) free for the model"),
        "active_power_w": (7.0, "estimate: below the 10 W budget of NVIDIA's default MaxN mode (4 cores at "
                                "1479 MHz, GPU included; NVIDIA's Jetson Nano power-mode table as reposted at "
                                "https://xiaopingtou.net/article-89752.html) since the GPU idles"),
        "idle_power_w": (2.0, "assumption: no idle measurement found"),
    },
    "esp32s3": {
        "title": "ESP32-S3-class microcontroller (2x Xtensa LX7 @ 240 MHz, 512 KB SRAM, 8 MB octal PSRAM @ 80 MHz); "
                 "no PyTorch: a hand-written fp32 inference runtime is assumed",
        "flops_per_s": (2.0e8, "estimate, kept from the first release: one single-precision FPU per core at 240 MHz "
                               "is at most about 0.5 GFLOP/s on 2 cores; 0.2 sustained"),
        "memory_bandwidth_bytes_per_s": (8.0e7, "estimate: octal (8-bit) PSRAM at 80 MHz (ESP32-S3-DevKitC-1 "
                                                "N16R8 memory map, https://esp32-s3-devkitc-1-n16r8.warehack.ing/"
                                                "reference/memory-map) moves at most 8 bit x 80 MHz x 2 (double data "
                                                "rate) = 160 MB/s; half of it sustained, as on the ESP32 whose "
                                                "quad PSRAM an Espressif engineer puts at close to 40 MB/s for reads "
                                                "and a user measured at ~20 MB/s copying "
                                                "(http://esp32.io/viewtopic.php?p=61383)"),
        "op_overhead_s": (1.0e-3, "estimate, kept from the first release"),
        "memory_bytes": (8.0e6, "source: the 8 MB PSRAM of the N16R8 module (same memory-map page); everything "
                                "else assumed to fit in the 512 KB SRAM"),
        "active_power_w": (0.25, "estimate: both cores at 240 MHz with PSRAM traffic, about 75 mA at 3.3 V (the "
                                 "ESP32-S2 datasheet gives 22 mA for one core at 240 MHz without memory traffic)"),
        "idle_power_w": (0.107, "source: 32.3 mA at 3.3 V measured on an ESP32-S3-DevKitC powered with no code "
                                "running (https://github.com/ComNets-Bremen/WUSN/files/14448364/"
                                "MoleNet.-.V6_power_consumption.pdf)"),
    },
    "rpi_zero2": {
        "title": "Raspberry Pi Zero 2 W (RP3A0, 4x Cortex-A53 @ 1 GHz, 512 MB LPDDR2), a camera board, PyTorch on "
                 "4 threads",
        "flops_per_s": (2.7e9, "estimate: the Pi 4's 8 GFLOP/s x 1.0/1.5 (clock) x 0.5 (in-order A53 vs "
                               "out-of-order A72 per clock; an assumption, no public fp32 conv benchmark found)"),
        "memory_bandwidth_bytes_per_s": (2.0e9, "estimate: about a third of the Pi 4's measured STREAM "
                                                f"({PI4_STREAM.split(', single')[0]}): 32-bit LPDDR2 against "
                                                "LPDDR4-3200; no STREAM figure of this board found"),
        "op_overhead_s": (3.0e-4, "estimate: the Pi 4's 0.1 ms x 8 / 2.7 (the conv-rate ratio)"),
        "memory_bytes": (3.84e8, "assumption: 384 MB of the 512 MB free for the model (the OS and a camera "
                                 "pipeline hold the rest); too small for VGG-16's 553 MB of fp32 weights"),
        "active_power_w": (3.0, "assumption: no wall measurement under a matrix load found"),
        "idle_power_w": (0.7, "assumption: no idle measurement found"),
    },
    "laptop": {
        "title": "Laptop CPU (an x86 core like the reference machine's, AVX-512; 4 PyTorch threads; dual-channel "
                 "DDR5-5600)",
        "flops_per_s": (None, "estimate: 4 threads x the reference machine's measured conv rate x 0.6 (parallel "
                              "efficiency and a laptop's lower sustained clock)"),
        "memory_bandwidth_bytes_per_s": (4.0e10, "estimate: dual-channel DDR5-5600 is 89.6 GB/s nominal; x 0.45, "
                                                 "the Pi 4's measured-STREAM / nominal ratio"),
        "op_overhead_s": (None, "estimate: the reference machine's fitted overhead"),
        "memory_bytes": (8.0e9, "assumption: 8 GB free for the model"),
        "active_power_w": (25.0, "assumption: a laptop with four cores busy (no measurement)"),
        "idle_power_w": (6.0, "assumption: a laptop idle with its screen off (no measurement)"),
        "radio": (2.0, 2.0, "estimate: idle plus 2 W while sending or receiving; a ThinkPad W510 (Intel 6300 "
                            "Wi-Fi) drew 1.5-4.9 W more downloading at 50-700 kB/s, CPU included "
                            "(https://www.fedoraproject.org/w/index.php?title=SIGs/PowerManagement/"
                            "WifiSpeedPowerConsumption&oldid=237574)"),
    },
}
POWER_KEYS = ("active_power_w", "idle_power_w")
#: cluster preset -> (board per device, device names, host, description)
CLUSTERS = {
    **{f"rpi4_x{k}": ([("rpi4", f"rpi{i}") for i in range(k)], f"{k} identical Raspberry Pi 4 boards")
       for k in (2, 3, 4, 6, 8)},
    "rpi5_x4": ([("rpi5", f"rpi{i}") for i in range(4)], "4 identical Raspberry Pi 5 boards"),
    "jetson_nano_cpu_x4": ([("jetson_nano_cpu", f"nano{i}") for i in range(4)],
                           "4 identical Jetson Nano boards, CPU only"),
    "esp32s3_x4": ([("esp32s3", f"mcu{i}") for i in range(4)], "4 identical ESP32-S3-class microcontrollers"),
    "laptop_x2": ([("laptop", f"laptop{i}") for i in range(2)], "2 identical laptops"),
    "hetero_3": ([("jetson_nano_cpu", "jetson_nano"), ("rpi4", "rpi4_a"), ("rpi4", "rpi4_b")],
                 "Heterogeneous IoT cluster: a Jetson Nano (CPU) host with two Raspberry Pi 4"),
    "camera_rpi5_x2": ([("rpi_zero2", "camera"), ("rpi5", "rpi5_a"), ("rpi5", "rpi5_b")],
                       "Weak host: a Raspberry Pi Zero 2 W camera board holding the image, with two Raspberry Pi 5 "
                       "helpers (placement pays: moving work off the host)"),
    "rpi_zero2_x4": ([("rpi_zero2", f"zero{i}") for i in range(4)],
                     "4 identical Raspberry Pi Zero 2 W boards, each too small to hold VGG-16 alone"),
    "hetero_4": ([("jetson_nano_cpu", "jetson_nano"), ("rpi4", "rpi4_a"), ("rpi4", "rpi4_b"), ("esp32s3", "esp32s3")],
                 "Heterogeneous IoT cluster: a Jetson Nano (CPU) host, two Raspberry Pi 4 and an ESP32-S3-class MCU "
                 "whose memory binds"),
}


def board_figures(board: str, ref: dict, passes: dict | None = None) -> tuple[dict, list[str]]:
    """The device config of ``board`` and the comment lines saying where each number comes from; ``passes``: the
    profile the weight pass comes from (default ``ref``)."""
    passes = ref if passes is None else passes
    spec = BOARDS[board]
    dev = ref["device"]
    ref_conv, ref_bw = dev["flops_per_s"], dev["memory_bandwidth_bytes_per_s"]
    conv = spec["flops_per_s"][0] or 4 * ref_conv * 0.6
    bw = spec["memory_bandwidth_bytes_per_s"][0]
    overhead = spec["op_overhead_s"][0] or dev["op_overhead_s"]
    fig = {"flops_per_s": conv, "memory_bytes": spec["memory_bytes"][0], "op_overhead_s": overhead,
           "memory_bandwidth_bytes_per_s": bw, "kind_flops_per_s": {}, "kind_bytes_per_s": {}}
    idle = spec["idle_power_w"][0]
    tx_inc, rx_inc, radio_note = spec.get("radio", (RADIO_TX_W, RADIO_RX_W, RADIO_NOTE))
    power = {"active_power_w": spec["active_power_w"][0], "idle_power_w": idle,
             "tx_power_w": idle + tx_inc, "rx_power_w": idle + rx_inc}
    if board == "esp32s3":  # no torch kernels to transfer: scalar loops, pooling and depthwise at half the conv rate
        fig["kind_flops_per_s"] = {k: conv / 2 for k in ("dwconv", "maxpool", "avgpool", "adaptive_avgpool")}
        kinds_note = ("kind_flops_per_s: estimate, pooling and depthwise convs at half the conv rate (loops without "
                      "a conv's register reuse); every other kind priced by its bytes at the memory bandwidth")
    else:
        for kind, rate in sorted(dev["kind_flops_per_s"].items()):
            fig["kind_flops_per_s"][kind] = rate * conv / ref_conv
        for kind, kbw in sorted(dev["kind_bytes_per_s"].items()):
            if kbw < ref_bw / 2:  # a compute-efficiency figure: it follows the conv rate
                fig["kind_bytes_per_s"][kind] = kbw * conv / ref_conv
            elif kbw * bw / ref_bw < bw:  # a memory figure: it follows the memory bandwidth
                fig["kind_bytes_per_s"][kind] = kbw * bw / ref_bw
            # else: faster than memory on the reference (its caches); on the board, the memory bandwidth
        kinds_note = (f"kind_flops_per_s / kind_bytes_per_s: estimates, the ratios measured by `iopopt profile` on the "
                      f"reference machine ({ref['machine'].get('cpu_model')}, {ref.get('stamp')}): rates and "
                      "compute-like bandwidths (below half the memory bandwidth) scaled by the conv-rate ratio, the "
                      "others by the memory-bandwidth ratio and at most the memory bandwidth")
    notes = [f"{key}: {spec[key][1]}" for key in ("flops_per_s", "memory_bandwidth_bytes_per_s", "op_overhead_s",
                                                 "memory_bytes", *POWER_KEYS)]
    notes.append(f"tx_power_w / rx_power_w: {radio_note}")
    notes.append(kinds_note)
    weight_pass = passes["device"].get("weight_bytes_per_s")
    if weight_pass and board != "esp32s3":
        fig["weight_bytes_per_s"] = weight_pass * conv / passes["device"]["flops_per_s"]
        notes.append(f"weight_bytes_per_s: estimate, the weight pass of a row share measured by `iopopt profile` on "
                     f"the reference machine ({passes.get('stamp')}: {weight_pass / 1e9:.2f} GB/s at a conv rate of "
                     f"{passes['device']['flops_per_s'] / 1e9:.0f} GFLOP/s), scaled by the conv-rate ratio")
    elif board == "esp32s3":
        notes.append("weight_bytes_per_s: none (no kernel that packs its weights per call)")
    return {**fig, "power": power}, [spec["title"] + ":"] + notes


def _wrap(text: str, width: int = 116) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = "  " + w
        else:
            cur = f"{cur} {w}" if cur else w
    return lines + ([cur] if cur else [])


def cluster_text(name: str, ref: dict, passes: dict | None = None) -> str:
    members, what = CLUSTERS[name]
    lines = [f"# {what}; device 0 holds the input and receives the output.",
             "# Roofline devices (DESIGN §2); every number's source below. Estimates are ASSUMPTIONS, not",
             "# measurements, and are labelled as such. Measure your own boards with `iopopt profile`.",
             "# Written by scripts/board_presets.py."]
    for board in dict.fromkeys(b for b, _ in members):
        for note in board_figures(board, ref, passes)[1]:
            lines += [f"# {ln}" for ln in _wrap(note)]
    lines += [f"name: {name}       # display name in results",
              "host: 0              # index (or name) of the device holding the input and the output",
              "split: proportional  # channel/row shares: proportional (to flops_per_s) | equal",
              "devices:             # roofline devices: rates, bandwidths, overhead, memory, power figures (W)"]
    for board, dev_name in members:
        fig = board_figures(board, ref, passes)[0]
        lines.append(f"  - name: {dev_name}")
        lines.append(f"    flops_per_s: {fig['flops_per_s']:.3e}")
        lines.append(f"    memory_bandwidth_bytes_per_s: {fig['memory_bandwidth_bytes_per_s']:.3e}")
        lines.append(f"    op_overhead_s: {fig['op_overhead_s']:.3e}")
        lines.append(f"    memory_bytes: {fig['memory_bytes']:.3e}")
        for key, watts in fig["power"].items():
            lines.append(f"    {key}: {watts:.4g}")
        if "weight_bytes_per_s" in fig:
            lines.append(f"    weight_bytes_per_s: {fig['weight_bytes_per_s']:.3e}")
        for key in ("kind_flops_per_s", "kind_bytes_per_s"):
            if fig[key]:
                inner = ", ".join(f"{k}: {v:.3e}" for k, v in fig[key].items())
                lines.append(f"    {key}: {{{inner}}}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write the board presets of iopopt/conf/cluster/.")
    parser.add_argument("profile", type=Path, help="the reference profile (a directory holding profile.json)")
    parser.add_argument("--weight-pass", type=Path, default=None,
                        help="a profile of the same machine whose row shares give the weight pass (default: PROFILE)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    ref = json.loads((args.profile / "profile.json").read_text())
    passes = None if args.weight_pass is None else json.loads((args.weight_pass / "profile.json").read_text())
    for name in CLUSTERS:
        (CONF / f"{name}.yaml").write_text(cluster_text(name, ref, passes))
        print(f"wrote {CONF / f'{name}.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
