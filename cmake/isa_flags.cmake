# Compiler flags of the per-ISA kernel folders (DESIGN.md "Kernels"), shared by the main build and
# the fuzz build so the two cannot drift apart.
set(LOWBIT_AVX2_FLAGS -mavx2 -mfma -mf16c -mbmi2)
set(LOWBIT_AVX512_FLAGS ${LOWBIT_AVX2_FLAGS} -mavx512f -mavx512bw -mavx512vl -mavx512dq
  -mavx512vnni -mavx512bf16 -mgfni)
