// The index ops on cuda tensors (include <strata/backend/cuda.hpp>; the emulator under g++) against
// the same ops on the cpu, on the same values: index_select, gather, scatter_add, index_add (forward,
// and the gradients through autograd), one_hot, nn::Embedding with padding_idx, masked_fill, and the
// joins (cat, stack, split, chunk, unbind: copy_ into views, and view gradients).
// Operands are made on the cpu, copied to cuda whole and then viewed the same way on both devices
// (contiguous, transposed, sliced with a step, expanded with stride 0), index tensors too.
// Everything here is exact: gather/index_select copy bits, and the scatter kernels add in the cpu's
// order (one thread per row along dim, f16/bf16 rounded after each addition as on the cpu), so the
// cuda results equal the cpu's bit for bit, repeated indices included. Bad indices give the cpu's
// Error, word for word.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"
#include "strata/backend/cuda/index.hpp"  // also through cuda.hpp; named here as the header under test

namespace test_cuda_index {

using namespace strata;

/// The same tensor on the cpu and on cuda, viewed the same way.
struct Both {
  Tensor cpu, gpu;
};

/// How an operand is laid out in memory (the same on both devices).
enum class Layout { contiguous, transposed, strided, expanded };
const std::vector<Layout> kLayouts = {Layout::contiguous, Layout::transposed, Layout::strided, Layout::expanded};
inline const char* layout_name(Layout l) {
  static constexpr const char* names[] = {"contiguous", "transposed", "strided", "expanded"};
  return names[int(l)];
}

/// got (on cuda) equals want (on the cpu) exactly: same shape, dtype and values.
inline void check_same(const Tensor& got, const Tensor& want, const std::string& what) {
  th::check_cuda_same(got, want, 0, what);
}
using th::error_of;

/// Host values laid out as asked, on both devices. Transposed: stored with the dims reversed;
/// strided: every other element of the last dim; expanded: dim 0 (or the only dim) broadcast from size 1.
inline Both lay_out(const std::vector<double>& v, const Shape& shape, DType dt, Layout l) {
  auto make = [&](const Shape& s, const std::vector<double>& vals) {
    Tensor c = from_vector(vals, s, {.dtype = DType::f64}).to(dt);
    return Both{c, to(c, kCUDA)};
  };
  const int nd = int(shape.size());
  if (l == Layout::contiguous || nd == 0) return make(shape, v);
  if (l == Layout::transposed) {  // v is row-major over shape; store it transposed
    const Shape rs(shape.rbegin(), shape.rend());
    std::vector<double> t(v.size());
    for (int64_t n = 0; n < int64_t(v.size()); ++n) {
      const std::vector<int64_t> i = th::unravel(n, shape);
      int64_t off = 0;
      for (int k = 0; k < nd; ++k) off = off * rs[size_t(k)] + i[size_t(nd - 1 - k)];
      t[size_t(off)] = v[size_t(n)];
    }
    std::vector<int64_t> perm(static_cast<size_t>(nd));
    for (int k = 0; k < nd; ++k) perm[size_t(k)] = nd - 1 - k;
    Both b = make(rs, t);
    return {permute(b.cpu, perm), permute(b.gpu, perm)};
  }
  if (l == Layout::strided) {  // doubled last dim, odd elements filled with junk
    Shape big = shape;
    big.back() *= 2;
    std::vector<double> t(v.size() * 2, 99);
    for (size_t n = 0; n < v.size(); ++n) t[2 * n] = v[n];
    Both b = make(big, t);
    return {slice(b.cpu, -1, 0, big.back(), 2), slice(b.gpu, -1, 0, big.back(), 2)};
  }
  // expanded: the values of the first slice along dim 0, repeated
  Shape one = shape;
  const int64_t n0 = one[0];
  one[0] = 1;
  std::vector<double> t(v.begin(), v.begin() + int64_t(v.size()) / std::max<int64_t>(n0, 1));
  Both b = make(one, t);
  return {expand(b.cpu, shape), expand(b.gpu, shape)};
}

/// n values in [lo, hi) (integers when ints) from a fixed seed.
inline std::vector<double> draw(int64_t n, double lo, double hi, bool ints, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v)
    x = ints ? double(std::uniform_int_distribution<int64_t>(int64_t(lo), int64_t(hi) - 1)(g))
             : std::uniform_real_distribution<double>(lo, hi)(g);
  return v;
}

/// Random values of dtype dt (small integers for the integer dtypes, 0/1 for bool).
inline Both data(const Shape& shape, DType dt, Layout l, uint32_t seed) {
  const bool ints = !is_floating(dt);
  const double lo = dt == DType::b8 || dt == DType::u8 ? 0 : -9, hi = dt == DType::b8 ? 2 : 9;
  return lay_out(draw(numel(shape), lo, hi, ints, seed), shape, dt, l);
}

/// Indices in [0, size) (repeats likely), of dtype dt.
inline Both indices(const Shape& shape, int64_t size, DType dt, Layout l, uint32_t seed) {
  return lay_out(draw(numel(shape), 0, double(size), true, seed), shape, dt, l);
}

/// A leaf copy of t that requires grad.
inline Tensor leaf(const Tensor& t) {
  Tensor r = t.detach();
  r.requires_grad_();
  return r;
}

const std::vector<DType> kAll = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                 DType::i32, DType::i64, DType::u8,  DType::b8};
const std::vector<DType> kNumeric = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8};
const std::vector<DType> kIndex = {DType::i64, DType::i32};

inline std::string name_of(const char* op, DType dt, DType it, int d, Layout lx, Layout li) {
  return std::string(op) + " " + std::string(dtype_name(dt)) + " index " + std::string(dtype_name(it)) + " dim " +
         std::to_string(d) + " x " + layout_name(lx) + " index " + layout_name(li);
}

// ---------------------------------------------------------------- index_select / index_add

TEST_CASE("cuda index_select equals the cpu's on every dtype, layout and dim, with its gradient",
          "[cuda][index]") {
  const Shape xs = {5, 6, 7};
  uint32_t seed = 1;
  for (const DType dt : kAll)
    for (const DType it : kIndex)
      for (int d = 0; d < 3; ++d)
        for (const Layout lx : kLayouts)
          for (const Layout li : {Layout::contiguous, Layout::strided, Layout::expanded}) {
            const std::string what = name_of("index_select", dt, it, d, lx, li);
            const Both x = data(xs, dt, lx, ++seed);
            const Both idx = indices({9}, xs[size_t(d)], it, li, ++seed);  // 9 > size: repeats
            const Tensor yc = index_select(x.cpu, d, idx.cpu), yg = index_select(x.gpu, d, idx.gpu);
            check_same(yg, yc, what);
            if (!is_floating(dt)) continue;
            Tensor xc = leaf(x.cpu), xg = leaf(x.gpu);
            const Tensor dout = data(yc.shape(), dt, Layout::contiguous, ++seed).cpu;
            index_select(xc, d, idx.cpu).backward(dout);
            index_select(xg, d - 3, idx.gpu).backward(to(dout, kCUDA));  // a negative dim too
            check_same(xg.grad(), xc.grad(), what + " dx");
          }
  // a 0-dim input with a one-element index stays a scalar
  const Both s = data({}, DType::f32, Layout::contiguous, 5);
  const Both i0 = indices({1}, 1, DType::i64, Layout::contiguous, 5);
  check_same(index_select(s.gpu, 0, i0.gpu), index_select(s.cpu, 0, i0.cpu), "index_select 0-dim");
}

TEST_CASE("cuda index_add equals the cpu's: repeated indices accumulate in order, and its gradients",
          "[cuda][index]") {
  const Shape xs = {4, 5, 6};
  uint32_t seed = 100;
  for (const DType dt : kNumeric)
    for (const DType it : kIndex)
      for (int d = 0; d < 3; ++d)
        for (const Layout lx : kLayouts)
          for (const Layout li : {Layout::contiguous, Layout::strided, Layout::expanded}) {
            const std::string what = name_of("index_add", dt, it, d, lx, li);
            Shape ss = xs;
            ss[size_t(d)] = 11;  // 11 slices into 4..6: every target is hit about twice
            const Both x = data(xs, dt, lx, ++seed);
            const Both src = data(ss, dt, lx == Layout::expanded ? Layout::transposed : lx, ++seed);
            const Both idx = indices({11}, xs[size_t(d)], it, li, ++seed);
            const Tensor yc = index_add(x.cpu, d, idx.cpu, src.cpu), yg = index_add(x.gpu, d, idx.gpu, src.gpu);
            check_same(yg, yc, what);
            if (!is_floating(dt)) continue;
            Tensor xc = leaf(x.cpu), xg = leaf(x.gpu), sc = leaf(src.cpu), sg = leaf(src.gpu);
            const Tensor dout = data(xs, dt, Layout::contiguous, ++seed).cpu;
            index_add(xc, d, idx.cpu, sc).backward(dout);
            index_add(xg, d, idx.gpu, sg).backward(to(dout, kCUDA));
            check_same(xg.grad(), xc.grad(), what + " dx");
            check_same(sg.grad(), sc.grad(), what + " dsrc");
          }
}

// ---------------------------------------------------------------- gather / scatter_add

TEST_CASE("cuda gather equals the cpu's on every dtype, layout and dim, with its gradient", "[cuda][index]") {
  const Shape xs = {4, 5, 6};
  uint32_t seed = 200;
  for (const DType dt : kAll)
    for (const DType it : kIndex)
      for (int d = 0; d < 3; ++d)
        for (const Layout lx : kLayouts)
          for (const Layout li : kLayouts) {
            const std::string what = name_of("gather", dt, it, d, lx, li);
            Shape is = {3, 4, 5};  // smaller than x off dim; longer than x along dim (repeats)
            is[size_t(d)] = 8;
            const Both x = data(xs, dt, lx, ++seed);
            const Both idx = indices(is, xs[size_t(d)], it, li, ++seed);
            const Tensor yc = gather(x.cpu, d, idx.cpu), yg = gather(x.gpu, d, idx.gpu);
            check_same(yg, yc, what);
            if (!is_floating(dt)) continue;
            Tensor xc = leaf(x.cpu), xg = leaf(x.gpu);
            const Tensor dout = data(is, dt, Layout::contiguous, ++seed).cpu;
            gather(xc, d, idx.cpu).backward(dout);
            gather(xg, d, idx.gpu).backward(to(dout, kCUDA));
            check_same(xg.grad(), xc.grad(), what + " dx");
          }
  const Both s = data({}, DType::f64, Layout::contiguous, 7);
  const Both i0 = indices({}, 1, DType::i32, Layout::contiguous, 7);
  check_same(gather(s.gpu, 0, i0.gpu), gather(s.cpu, 0, i0.cpu), "gather 0-dim");
}

TEST_CASE("cuda scatter_add equals the cpu's: repeated indices accumulate in order, and its gradients",
          "[cuda][index]") {
  const Shape xs = {4, 5, 6};
  uint32_t seed = 300;
  for (const DType dt : kNumeric)
    for (const DType it : kIndex)
      for (int d = 0; d < 3; ++d)
        for (const Layout lx : kLayouts)
          for (const Layout li : kLayouts) {
            const std::string what = name_of("scatter_add", dt, it, d, lx, li);
            Shape is = {3, 4, 5}, ss = {4, 5, 6};  // src larger than index: its rest is not added
            is[size_t(d)] = 9, ss[size_t(d)] = 10;
            const Both x = data(xs, dt, lx, ++seed);
            const Both src = data(ss, dt, lx == Layout::expanded ? Layout::strided : lx, ++seed);
            const Both idx = indices(is, xs[size_t(d)], it, li, ++seed);
            const Tensor yc = scatter_add(x.cpu, d, idx.cpu, src.cpu), yg = scatter_add(x.gpu, d, idx.gpu, src.gpu);
            check_same(yg, yc, what);
            if (!is_floating(dt)) continue;
            Tensor xc = leaf(x.cpu), xg = leaf(x.gpu), sc = leaf(src.cpu), sg = leaf(src.gpu);
            const Tensor dout = data(xs, dt, Layout::contiguous, ++seed).cpu;
            scatter_add(xc, d, idx.cpu, sc).backward(dout);
            scatter_add(xg, d, idx.gpu, sg).backward(to(dout, kCUDA));
            check_same(xg.grad(), xc.grad(), what + " dx");
            check_same(sg.grad(), sc.grad(), what + " dsrc");
          }
}

TEST_CASE("cuda scatter_add of many values into one element sums them in the cpu's order", "[cuda][index]") {
  // 3000 values of mixed magnitude into 2 targets per row: any other order of the float sums
  // would round differently, so equality here means the cpu's order (and no lost updates)
  for (const DType dt : {DType::f32, DType::f16, DType::bf16}) {
    const std::vector<double> v = draw(2 * 3000, -1000, 1000, false, 17);
    std::vector<double> w(v);
    for (size_t i = 0; i < w.size(); ++i) w[i] = v[i] * (i % 7 == 0 ? 1e-3 : 1);
    const Both src = lay_out(w, {2, 3000}, dt, Layout::contiguous);
    const Both idx = indices({2, 3000}, 2, DType::i64, Layout::contiguous, 18);
    const Both x = data({2, 2}, dt, Layout::contiguous, 19);
    const Tensor yc = scatter_add(x.cpu, 1, idx.cpu, src.cpu);
    check_same(scatter_add(x.gpu, 1, idx.gpu, src.gpu), yc, "scatter_add long rows " + std::string(dtype_name(dt)));
    const Both i1 = indices({3000}, 2, DType::i32, Layout::contiguous, 20);
    const Both s1 = lay_out(std::vector<double>(w.begin(), w.begin() + 6000), {3000, 2}, dt, Layout::contiguous);
    check_same(index_add(x.gpu, 0, i1.gpu, s1.gpu), index_add(x.cpu, 0, i1.cpu, s1.cpu),
               "index_add long " + std::string(dtype_name(dt)));
  }
}

TEST_CASE("cuda index ops with a bad index throw the cpu's Error", "[cuda][index]") {
  for (const DType it : kIndex)
    for (const double bad : {5.0, -1.0, 1e6}) {
      const Both x = data({3, 5}, DType::f32, Layout::contiguous, 31);
      std::vector<double> iv = {0, 4, 2, 1, 3, 0};
      iv[3] = bad;  // one bad value: the error names it
      const Both i1 = lay_out(iv, {6}, it, Layout::contiguous);
      const Both i2 = lay_out(iv, {3, 2}, it, Layout::transposed);
      const Both i3 = lay_out(iv, {1, 6}, it, Layout::contiguous);
      const Both src = data({3, 6}, DType::f32, Layout::contiguous, 32);
      auto same_error = [&](const std::string& what, auto op) {
        const std::string ec = error_of([&] { (void)op(x.cpu, i1.cpu, i2.cpu, i3.cpu, src.cpu); });
        const std::string eg = error_of([&] { (void)op(x.gpu, i1.gpu, i2.gpu, i3.gpu, src.gpu); });
        INFO(what << " cpu: " << ec << "\ncuda: " << eg);
        CHECK(!ec.empty());
        CHECK(eg == ec);
        CHECK(eg.find("got index " + std::to_string(int64_t(bad))) != std::string::npos);
      };
      same_error("index_select", [](auto& x_, auto& i1_, auto&, auto&, auto&) { return index_select(x_, 1, i1_); });
      same_error("gather", [](auto& x_, auto&, auto& i2_, auto&, auto&) { return gather(x_, 1, i2_); });
      same_error("index_add", [](auto& x_, auto& i1_, auto&, auto&, auto& s_) { return index_add(x_, 1, i1_, s_); });
      same_error("scatter_add",
                 [](auto& x_, auto&, auto&, auto& i3_, auto& s_) { return scatter_add(x_, 1, i3_, s_); });
    }
  // scatter_add into bool: the cpu's dtype error; an index on another device: named by the op
  const Both b = data({3}, DType::b8, Layout::contiguous, 33);
  const Both i = indices({3}, 3, DType::i64, Layout::contiguous, 34);
  const std::string eb = error_of([&] { (void)scatter_add(b.gpu, 0, i.gpu, b.gpu); });
  CHECK(eb == error_of([&] { (void)scatter_add(b.cpu, 0, i.cpu, b.cpu); }));
  CHECK(eb.rfind("scatter_add:", 0) == 0);
  const Both f = data({3}, DType::f32, Layout::contiguous, 35);
  const std::string ed = error_of([&] { (void)gather(f.gpu, 0, i.cpu); });
  CHECK(ed.rfind("gather:", 0) == 0);
  CHECK(ed.find("expected one device") != std::string::npos);
}

// ---------------------------------------------------------------- one_hot / Embedding / masked_fill

TEST_CASE("cuda one_hot equals the cpu's, and bad labels give the cpu's Error", "[cuda][index]") {
  for (const DType it : kIndex)
    for (const Layout l : kLayouts)
      for (const int64_t classes : {int64_t(-1), int64_t(7)}) {
        const Both lab = indices({3, 4}, 5, it, l, 40);
        check_same(one_hot(lab.gpu, classes), one_hot(lab.cpu, classes),
                   std::string("one_hot ") + layout_name(l) + " classes " + std::to_string(classes));
      }
  const Both bad = lay_out({0, 3, 9}, {3}, DType::i64, Layout::contiguous);
  const std::string e = error_of([&] { (void)one_hot(bad.gpu, 4); });
  CHECK(e == error_of([&] { (void)one_hot(bad.cpu, 4); }));
  CHECK(e.rfind("one_hot:", 0) == 0);
  const Both empty = lay_out({}, {0}, DType::i64, Layout::contiguous);
  check_same(one_hot(empty.gpu, 3), one_hot(empty.cpu, 3), "one_hot empty");
}

TEST_CASE("nn::Embedding with padding_idx on cuda equals the cpu's, forward and backward", "[cuda][index]") {
  for (const DType it : kIndex) {
    nn::Embedding ec(10, 4, 2), eg(10, 4, 2);
    {
      NoGrad ng;
      copy_(eg.weight, ec.weight);
    }
    eg.to(kCUDA);
    const Both idx = lay_out({2, 5, 2, 9, 0, 2, 5, 5}, {2, 4}, it, Layout::transposed);  // repeats, padding
    const Tensor yc = ec.forward(idx.cpu), yg = eg.forward(idx.gpu);
    check_same(yg, yc, "Embedding forward");
    const Tensor dout = data(yc.shape(), DType::f32, Layout::contiguous, 50).cpu;
    yc.backward(dout);
    yg.backward(to(dout, kCUDA));
    check_same(eg.weight.grad(), ec.weight.grad(), "Embedding dweight");
    for (double v : th::values(to(select(eg.weight.grad(), 0, 2), kCPU))) CHECK(v == 0);  // padding row
    CHECK(th::values(to(select(eg.weight.grad(), 0, 5), kCPU)) != std::vector<double>(4, 0.0));
  }
}

TEST_CASE("cuda masked_fill equals the cpu's, broadcast mask, with its gradient", "[cuda][index]") {
  for (const DType dt : {DType::f32, DType::f16, DType::bf16, DType::i64})
    for (const Layout l : kLayouts) {
      const Both x = data({4, 6}, dt, l, 60);
      const Both m = data({6}, DType::b8, Layout::strided, 61);
      check_same(masked_fill(x.gpu, m.gpu, -3.5), masked_fill(x.cpu, m.cpu, -3.5),
                 std::string("masked_fill ") + std::string(dtype_name(dt)) + " " + layout_name(l));
      if (!is_floating(dt)) continue;
      Tensor xc = leaf(x.cpu), xg = leaf(x.gpu);
      const Tensor dout = data({4, 6}, dt, Layout::contiguous, 62).cpu;
      masked_fill(xc, m.cpu, 1).backward(dout);
      masked_fill(xg, m.gpu, 1).backward(to(dout, kCUDA));
      check_same(xg.grad(), xc.grad(), "masked_fill dx");
    }
}

// ---------------------------------------------------------------- cat / stack / split / chunk / unbind

TEST_CASE("cat and stack of cuda tensors equal the cpu's, with their gradients", "[cuda][index][join]") {
  for (const DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16})
    for (int d = 0; d < 2; ++d) {
      Shape s0 = {3, 4}, s1 = {3, 4}, s2 = {3, 4};
      s0[size_t(d)] = 2, s2[size_t(d)] = 5;
      const Both a = data(s0, dt, Layout::transposed, 70), b = data(s1, dt, Layout::expanded, 71);
      const Both c = data(s2, DType::f16, Layout::strided, 72);  // promoted to dt (f16 + bf16 -> f32)
      Tensor ac = leaf(a.cpu), ag = leaf(a.gpu), bc = leaf(b.cpu), bg = leaf(b.gpu), cc = leaf(c.cpu), cg = leaf(c.gpu);
      const Tensor yc = cat({ac, bc, cc}, d), yg = cat({ag, bg, cg}, d);
      const std::string what = "cat " + std::string(dtype_name(dt)) + " dim " + std::to_string(d);
      check_same(yg, yc, what);
      const Tensor dout = data(yc.shape(), yc.dtype(), Layout::contiguous, 73).cpu;
      yc.backward(dout);
      yg.backward(to(dout, kCUDA));
      check_same(ag.grad(), ac.grad(), what + " da");
      check_same(bg.grad(), bc.grad(), what + " db");
      check_same(cg.grad(), cc.grad(), what + " dc");

      Tensor pc = leaf(a.cpu), pg = leaf(a.gpu), qc = leaf(contiguous(a.cpu)), qg = leaf(contiguous(a.gpu));
      const Tensor zc = stack({pc, qc}, d + 1), zg = stack({pg, qg}, d + 1);
      check_same(zg, zc, "stack " + what);
      const Tensor dz = data(zc.shape(), dt, Layout::contiguous, 74).cpu;
      zc.backward(dz);
      zg.backward(to(dz, kCUDA));
      check_same(pg.grad(), pc.grad(), "stack " + what + " dp");
      check_same(qg.grad(), qc.grad(), "stack " + what + " dq");
    }
}

TEST_CASE("split, chunk and unbind of cuda tensors equal the cpu's, with their gradients", "[cuda][index][join]") {
  for (const DType dt : {DType::f32, DType::bf16})
    for (const Layout l : {Layout::contiguous, Layout::transposed, Layout::strided})
      for (int d = 0; d < 2; ++d) {
        const std::string what = std::string(dtype_name(dt)) + " " + layout_name(l) + " dim " + std::to_string(d);
        const Both x = data({5, 6}, dt, l, 80);
        Tensor xc = leaf(x.cpu), xg = leaf(x.gpu);
        const std::vector<Tensor> sc = split(xc, 2, d), sg = split(xg, 2, d);
        const std::vector<Tensor> cc = chunk(xc, 2, d), cg = chunk(xg, 2, d);
        const std::vector<Tensor> uc = unbind(xc, d), ug = unbind(xg, d);
        REQUIRE(sc.size() == sg.size());
        REQUIRE(cc.size() == cg.size());
        REQUIRE(uc.size() == ug.size());
        // a loss that weighs every piece differently, so each piece's gradient lands in its place
        Tensor lc = zeros({}, {.dtype = dt}), lg = zeros({}, {.dtype = dt, .device = kCUDA});
        double k = 1;
        auto add_pieces = [&](const std::vector<Tensor>& pc, const std::vector<Tensor>& pg, const char* name) {
          for (size_t i = 0; i < pc.size(); ++i, k += 0.5) {
            check_same(pg[i], pc[i], std::string(name) + " " + what + " piece " + std::to_string(i));
            lc = add(lc, sum(mul(mul(pc[i], pc[i]), k)));
            lg = add(lg, sum(mul(mul(pg[i], pg[i]), k)));
          }
        };
        add_pieces(sc, sg, "split");
        add_pieces(cc, cg, "chunk");
        add_pieces(uc, ug, "unbind");
        lc.backward();
        lg.backward();
        check_same(xg.grad(), xc.grad(), "split/chunk/unbind " + what + " dx");
      }
}

}  // namespace test_cuda_index
