// Configure-time probe (CMakeLists.txt, OCCAM_ARCH=auto): exits 0 when the CPU running the
// build has AVX2 and FMA, the x86-64-v3 level occam compiles for by default.
int main() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 0 : 1; }
