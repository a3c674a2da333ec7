"""What no rewrite can move: CUDA graph capture, NVML, custom kernels, Triton, CUDA-only libraries
without fallbacks, compute capabilities. Written for the tests of `suanli port`; it is never run.
"""

import subprocess

import bitsandbytes as bnb  # port: CUDA-only library, no fallback
import pynvml  # port: NVML
import torch
import triton  # port: Triton kernels
import triton.language as tl  # port: Triton kernels
from deepspeed.ops.adam import FusedAdam  # port: DeepSpeed CUDA op
from torch.utils.cpp_extension import CUDAExtension, load  # port: custom CUDA extension
from xformers.ops import memory_efficient_attention  # port: CUDA-only library, no fallback


@triton.jit
def add_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + offsets, tl.load(x_ptr + offsets) + tl.load(y_ptr + offsets), mask=offsets < n)


def main() -> None:
    kernels = load(name="my_ops", sources=["my_ops.cpp", "my_ops_kernel.cu"])  # port: CUDA kernel source
    if torch.cuda.get_device_capability() >= (8, 0):  # port: compute capability
        print(torch.cuda.get_device_properties(0).multi_processor_count)  # port: device properties
    pynvml.nvmlInit()
    print(subprocess.run(["nvidia-smi", "-L"], capture_output=True, check=False).stdout)  # port: nvidia-smi
    static_x = torch.zeros(8, device="cuda")  # port: device string
    graph = torch.cuda.CUDAGraph()  # port: graph capture
    with torch.cuda.graph(graph):  # port: graph capture
        static_y = static_x * 2
    graph.replay()
    print(static_y, kernels, bnb, FusedAdam, memory_efficient_attention, CUDAExtension, add_kernel)


if __name__ == "__main__":
    main()
