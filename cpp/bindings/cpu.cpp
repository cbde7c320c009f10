// The private extension nnpk._cpu, compiled for the baseline instruction set: which of the
// engine's instruction-set levels this CPU and its operating system run. nnpk/_build.py
// asks it before loading the best nnpk/_isa/<level>/_core extension.
//
// x86-64 (the psABI's micro-architecture levels, as gcc's and clang's -march=x86-64-vN):
//   x86-64     the baseline (SSE2): always
//   x86-64-v3  v2 (CMPXCHG16B, LAHF-SAHF, POPCNT, SSE3, SSE4.1, SSE4.2, SSSE3) and AVX, AVX2, BMI1,
//              BMI2, F16C, FMA, LZCNT, MOVBE, XSAVE, with the YMM state enabled by the OS (XGETBV)
//   x86-64-v4  v3 and AVX512F, AVX512BW, AVX512CD, AVX512DQ, AVX512VL, with the opmask and ZMM
//              states enabled by the OS
// Other processors: the empty tuple (their one level is the compiler's default target).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>

#include <cstdint>

namespace {

bool bit(unsigned reg, int b) { return (reg >> b) & 1u; }

std::uint64_t xgetbv0() {
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

// 3, 4 or 1: the highest x86-64 level run here (levels 1 and 2 are both "x86-64" to the engine).
int x86_level() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 1;
  const unsigned ecx1 = c;
  const bool v2 = bit(ecx1, 0) && bit(ecx1, 9) && bit(ecx1, 13) && bit(ecx1, 19) && bit(ecx1, 20) && bit(ecx1, 23);
  const bool osxsave = bit(ecx1, 27);
  if (!v2 || !osxsave || !bit(ecx1, 12) || !bit(ecx1, 22) || !bit(ecx1, 28) || !bit(ecx1, 29)) return 1;
  const std::uint64_t xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return 1;  // SSE and AVX (YMM) states
  unsigned ext_a, ext_b, ext_c, ext_d;
  if (!__get_cpuid(0x80000001u, &ext_a, &ext_b, &ext_c, &ext_d)) return 1;
  if (!bit(ext_c, 0) || !bit(ext_c, 5)) return 1;  // LAHF-SAHF, LZCNT
  if (__get_cpuid_max(0, nullptr) < 7) return 1;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned ebx7 = b;
  if (!bit(ebx7, 3) || !bit(ebx7, 5) || !bit(ebx7, 8)) return 1;  // BMI1, AVX2, BMI2
  const bool avx512 = bit(ebx7, 16) && bit(ebx7, 17) && bit(ebx7, 28) && bit(ebx7, 30) && bit(ebx7, 31);
  if (!avx512 || (xcr0 & 0xE6) != 0xE6) return 3;  // F, DQ, CD, BW, VL; opmask, ZMM_Hi256, Hi16_ZMM states
  return 4;
}

}  // namespace

static PyObject* levels(PyObject*, PyObject*) {
  const int level = x86_level();
  if (level >= 4) return Py_BuildValue("(sss)", "x86-64", "x86-64-v3", "x86-64-v4");
  if (level >= 3) return Py_BuildValue("(ss)", "x86-64", "x86-64-v3");
  return Py_BuildValue("(s)", "x86-64");
}
#else
static PyObject* levels(PyObject*, PyObject*) { return PyTuple_New(0); }
#endif

static PyMethodDef methods[] = {
    {"levels", levels, METH_NOARGS, "The x86-64 instruction-set levels this CPU and OS run, lowest first."},
    {nullptr, nullptr, 0, nullptr}};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu", "Which of nnpk's instruction-set levels this CPU runs.",
                             -1, methods};

PyMODINIT_FUNC PyInit__cpu() { return PyModule_Create(&module); }
