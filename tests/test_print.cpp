// Printing: to_string / operator<< against the exact text PyTorch 1.13 prints.
//
// Each expected string below is `repr(t)` from Debian's python3-torch (1.13) for the Python in the
// comment above it, with "torch." removed from dtype names (strata prints `dtype=float64`, and the
// suffix line-wrapping was checked with that shorter name) and PyTorch's grad_fn class names
// replaced by strata's Node names (MulBackward0 -> mul_backward). A fuzz run of ~1000 random
// tensors (all dtypes, 0-4 dims, summarised ones, nan/inf, mixed magnitudes) matched exactly.
#include <catch2/catch.hpp>

#include "helpers.hpp"

namespace test_print {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {
Tensor vec(std::vector<double> v, Shape s = {-1}, DType dt = DType::f32) { return from_vector(v, std::move(s), {.dtype = dt}); }
}  // namespace

TEST_CASE("print: small floats, fixed / int / scientific modes", "[print]") {
  // torch.tensor([[1., -2.5], [3., 4.]])
  CHECK(to_string(vec({1, -2.5, 3, 4}, {2, 2})) ==
        "tensor([[ 1.0000, -2.5000],\n"
        "        [ 3.0000,  4.0000]])");
  // torch.tensor(3.5)
  CHECK(to_string(scalar_tensor(3.5)) == "tensor(3.5000)");
  // torch.tensor(-0.0)
  CHECK(to_string(scalar_tensor(-0.0)) == "tensor(-0.)");
  // torch.tensor([-0.0, 1.5])
  CHECK(to_string(vec({-0.0, 1.5})) == "tensor([-0.0000, 1.5000])");
  // torch.tensor([-1., 0.]);  torch.tensor([0., 0.])
  CHECK(to_string(vec({-1, 0})) == "tensor([-1.,  0.])");
  CHECK(to_string(vec({0, 0})) == "tensor([0., 0.])");
  // torch.tensor([1e10, 1.]);  torch.tensor([1., 1e5]) (integral but ratio > 1000)
  CHECK(to_string(vec({1e10, 1})) == "tensor([1.0000e+10, 1.0000e+00])");
  CHECK(to_string(vec({1, 1e5})) == "tensor([1.0000e+00, 1.0000e+05])");
  // torch.tensor([1e-5, 1., 2.])
  CHECK(to_string(vec({1e-5, 1, 2})) == "tensor([1.0000e-05, 1.0000e+00, 2.0000e+00])");
  // torch.tensor([1e8, 1.]);  torch.tensor([1.5, 1e8])
  CHECK(to_string(vec({1e8, 1})) == "tensor([1.0000e+08, 1.0000e+00])");
  CHECK(to_string(vec({1.5, 1e8})) == "tensor([1.5000e+00, 1.0000e+08])");
  // torch.tensor([0.5, 0.0001])  (float32 0.0001 is just below 1e-4)
  CHECK(to_string(vec({0.5, 0.0001})) == "tensor([5.0000e-01, 1.0000e-04])");
  // torch.arange(1, 8, dtype=torch.float64).reshape(7, 1) * torch.tensor([1e-3, 1., 1e3], dtype=torch.float64)
  CHECK(to_string(mul(arange(1, 8, 1, {.dtype = DType::f64}).reshape({7, 1}), vec({1e-3, 1, 1e3}, {3}, DType::f64))) ==
        "tensor([[1.0000e-03, 1.0000e+00, 1.0000e+03],\n"
        "        [2.0000e-03, 2.0000e+00, 2.0000e+03],\n"
        "        [3.0000e-03, 3.0000e+00, 3.0000e+03],\n"
        "        [4.0000e-03, 4.0000e+00, 4.0000e+03],\n"
        "        [5.0000e-03, 5.0000e+00, 5.0000e+03],\n"
        "        [6.0000e-03, 6.0000e+00, 6.0000e+03],\n"
        "        [7.0000e-03, 7.0000e+00, 7.0000e+03]], dtype=float64)");
}

TEST_CASE("print: nan and inf", "[print]") {
  // torch.tensor([1., float('nan'), 2.5, float('-inf')])
  CHECK(to_string(vec({1, NAN, 2.5, -INFINITY})) == "tensor([1.0000,    nan, 2.5000,   -inf])");
  // torch.tensor([float('nan'), float('inf'), -float('inf')])  (-nan prints as nan too)
  CHECK(to_string(vec({NAN, INFINITY, -INFINITY})) == "tensor([nan, inf, -inf])");
  CHECK(to_string(scalar_tensor(-NAN)) == "tensor(nan)");
}

TEST_CASE("print: integer, bool and 16-bit dtypes", "[print]") {
  // torch.tensor([True, False])
  CHECK(to_string(vec({1, 0}, {-1}, DType::b8)) == "tensor([ True, False])");
  // torch.tensor([[3]])
  CHECK(to_string(vec({3}, {1, 1}, DType::i64)) == "tensor([[3]])");
  // torch.tensor([0, 7, 255], dtype=torch.uint8)
  CHECK(to_string(vec({0, 7, 255}, {-1}, DType::u8)) == "tensor([  0,   7, 255], dtype=uint8)");
  // torch.tensor([[-5, 100000]], dtype=torch.int32)
  CHECK(to_string(vec({-5, 100000}, {1, 2}, DType::i32)) == "tensor([[    -5, 100000]], dtype=int32)");
  // torch.tensor([0.1, 65504., -1.]).half()
  CHECK(to_string(vec({0.1, 65504, -1}, {-1}, DType::f16)) ==
        "tensor([ 9.9976e-02,  6.5504e+04, -1.0000e+00], dtype=float16)");
  // torch.tensor([1.0, 2.0, 3.0]).to(torch.bfloat16)
  CHECK(to_string(vec({1, 2, 3}, {-1}, DType::bf16)) == "tensor([1., 2., 3.], dtype=bfloat16)");
  // int64 values beyond 2^53 print exactly
  Tensor big = Tensor::empty({1}, DType::i64);
  *big.data_ptr<int64_t>() = int64_t(9007199254740993);
  CHECK(to_string(big) == "tensor([9007199254740993])");
}

TEST_CASE("print: empty and undefined tensors", "[print]") {
  CHECK(to_string(Tensor()) == "tensor(undefined)");
  // torch.zeros(0)
  CHECK(to_string(zeros({0})) == "tensor([])");
  // torch.zeros(0, 3)
  CHECK(to_string(zeros({0, 3})) == "tensor([], size=(0, 3))");
  // torch.zeros(0, dtype=torch.int64)
  CHECK(to_string(zeros({0}, {.dtype = DType::i64})) == "tensor([], dtype=int64)");
  // torch.zeros(2, 0, 2, dtype=torch.bool)
  CHECK(to_string(zeros({2, 0, 2}, {.dtype = DType::b8})) == "tensor([], size=(2, 0, 2), dtype=bool)");
  // torch.zeros(0, dtype=torch.float64, requires_grad=True)
  CHECK(to_string(zeros({0}, {.dtype = DType::f64, .requires_grad = true})) ==
        "tensor([], dtype=float64, requires_grad=True)");
}

TEST_CASE("print: autograd suffixes", "[print]") {
  // torch.tensor([1., 2., 3.], dtype=torch.float64, requires_grad=True)
  CHECK(to_string(vec({1, 2, 3}, {-1}, DType::f64).requires_grad_()) ==
        "tensor([1., 2., 3.], dtype=float64, requires_grad=True)");
  // torch.arange(6.).reshape(2, 3).requires_grad_()
  CHECK(to_string(vec({1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_()) ==
        "tensor([[1., 2., 3.],\n"
        "        [4., 5., 6.]], requires_grad=True)");
  // torch.tensor([1., 2.], requires_grad=True) * torch.tensor([3., 0.5])  -> grad_fn=<MulBackward0>
  Tensor a = vec({1, 2}).requires_grad_();
  CHECK(to_string(mul(a, vec({3, 0.5}))) == "tensor([3., 1.], grad_fn=<mul_backward>)");
  {
    NoGrad g;
    CHECK(to_string(mul(a, vec({3, 0.5}))) == "tensor([3., 1.])");
  }
}

TEST_CASE("print: line wrapping and suffix wrapping", "[print]") {
  // torch.arange(40.)
  CHECK(to_string(arange(40, {.dtype = DType::f32})) ==
        "tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,\n"
        "        14., 15., 16., 17., 18., 19., 20., 21., 22., 23., 24., 25., 26., 27.,\n"
        "        28., 29., 30., 31., 32., 33., 34., 35., 36., 37., 38., 39.])");
  // (torch.arange(12, dtype=torch.float64) * 1111.5).reshape(2, 6)
  CHECK(to_string(mul(arange(12, {.dtype = DType::f64}), 1111.5).reshape({2, 6})) ==
        "tensor([[    0.0000,  1111.5000,  2223.0000,  3334.5000,  4446.0000,  5557.5000],\n"
        "        [ 6669.0000,  7780.5000,  8892.0000, 10003.5000, 11115.0000, 12226.5000]],\n"
        "       dtype=float64)");
}

TEST_CASE("print: summarisation above 1000 elements", "[print]") {
  // torch.arange(2000)
  CHECK(to_string(arange(2000)) == "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])");
  // torch.arange(1001.) * 0.5
  CHECK(to_string(mul(arange(1001, {.dtype = DType::f32}), 0.5)) ==
        "tensor([  0.0000,   0.5000,   1.0000,  ..., 499.0000, 499.5000, 500.0000])");
  // torch.arange(10000).reshape(100, 100)
  CHECK(to_string(arange(10000).reshape({100, 100})) ==
        "tensor([[   0,    1,    2,  ...,   97,   98,   99],\n"
        "        [ 100,  101,  102,  ...,  197,  198,  199],\n"
        "        [ 200,  201,  202,  ...,  297,  298,  299],\n"
        "        ...,\n"
        "        [9700, 9701, 9702,  ..., 9797, 9798, 9799],\n"
        "        [9800, 9801, 9802,  ..., 9897, 9898, 9899],\n"
        "        [9900, 9901, 9902,  ..., 9997, 9998, 9999]])");
  // torch.arange(1120).reshape(8, 2, 70)
  CHECK(to_string(arange(1120).reshape({8, 2, 70})) ==
        "tensor([[[   0,    1,    2,  ...,   67,   68,   69],\n"
        "         [  70,   71,   72,  ...,  137,  138,  139]],\n"
        "\n"
        "        [[ 140,  141,  142,  ...,  207,  208,  209],\n"
        "         [ 210,  211,  212,  ...,  277,  278,  279]],\n"
        "\n"
        "        [[ 280,  281,  282,  ...,  347,  348,  349],\n"
        "         [ 350,  351,  352,  ...,  417,  418,  419]],\n"
        "\n"
        "        ...,\n"
        "\n"
        "        [[ 700,  701,  702,  ...,  767,  768,  769],\n"
        "         [ 770,  771,  772,  ...,  837,  838,  839]],\n"
        "\n"
        "        [[ 840,  841,  842,  ...,  907,  908,  909],\n"
        "         [ 910,  911,  912,  ...,  977,  978,  979]],\n"
        "\n"
        "        [[ 980,  981,  982,  ..., 1047, 1048, 1049],\n"
        "         [1050, 1051, 1052,  ..., 1117, 1118, 1119]]])");
  // exactly 1000 elements is not summarised
  const std::string s = to_string(arange(1000));
  CHECK(s.find("...") == std::string::npos);
  CHECK(s.find(" 999])") != std::string::npos);
}

TEST_CASE("print: views print their logical values; operator<< matches to_string", "[print]") {
  // torch.arange(6.).reshape(2, 3).t()
  Tensor t = arange(6, {.dtype = DType::f32}).reshape({2, 3}).t();
  REQUIRE_FALSE(t.is_contiguous());
  CHECK(to_string(t) ==
        "tensor([[0., 3.],\n"
        "        [1., 4.],\n"
        "        [2., 5.]])");
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32}) {
    Tensor x = th::random({3, 4, 5}, dt, true);
    CHECK(to_string(x) == to_string(x.contiguous()));
    Tensor big = th::random({20, 60}, dt, true);  // summarised, through strides
    CHECK(to_string(big) == to_string(big.contiguous()));
  }
  std::ostringstream os;
  Tensor x = vec({1, -2.5});
  os << x;
  CHECK(os.str() == to_string(x));
  CHECK(os.str() == "tensor([ 1.0000, -2.5000])");
}

}  // namespace test_print
