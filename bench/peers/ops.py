# ops peer benchmark, PyTorch side: the cases of ops.cpp in the same order; "name median_ms" lines.
import statistics, sys, time
import torch

torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads())

def median_ms(f, reps):
    f()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); t.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t)

a, b, m = torch.randn(1 << 22), torch.randn(1 << 22), torch.randn(2048, 2048)
x, w, xb = torch.randn(256, 1000), torch.randn(256, 784), torch.randn(128, 784)
s512a, s512b = torch.randn(512, 512), torch.randn(512, 512)
bat_a, bat_b = torch.randn(64, 64, 64), torch.randn(64, 64, 64)

def mlp():
    w1 = w.detach().requires_grad_()
    loss = torch.log_softmax(torch.relu(torch.nn.functional.linear(xb, w1)), 1).mean()
    loss.backward()

def conv_fwd_bwd(cin, cout, h, k, s):
    x, w = torch.randn(128, cin, h, h, requires_grad=True), torch.randn(cout, cin, k, k, requires_grad=True)
    b, oh = torch.randn(cout, requires_grad=True), (h + 2 * (k // 2) - k) // s + 1
    g = torch.randn(128, cout, oh, oh)
    return lambda: torch.nn.functional.conv2d(x, w, b, s, k // 2).backward(g)

cases = [
    ("add_4M", lambda: a + b, 30), ("mul_scalar_4M", lambda: a * 2.0, 30), ("exp_4M", lambda: a.exp(), 30),
    ("tanh_4M", lambda: a.tanh(), 30), ("relu_4M", lambda: a.relu(), 30),
    ("add_transposed_2048", lambda: m + m.t(), 10), ("sum_4M", lambda: a.sum(), 30),
    ("sum_dim0_2048", lambda: m.sum(0), 30), ("sum_dim1_2048", lambda: m.sum(1), 30),
    ("max_dim1_2048", lambda: m.max(1), 30), ("log_softmax_256x1000", lambda: torch.log_softmax(x, 1), 50),
    ("matmul_512", lambda: s512a @ s512b, 20), ("bmm_64x64x64", lambda: bat_a @ bat_b, 30),
    ("linear_128x784_256", lambda: torch.nn.functional.linear(xb, w), 50), ("mlp_fwd_bwd_128", mlp, 30),
    ("conv3x3_16_32_s2_28_fb", conv_fwd_bwd(16, 32, 28, 3, 2), 10), ("conv3x3_64_64_7_fb", conv_fwd_bwd(64, 64, 7, 3, 1), 10),
    ("conv3x3_128_128_4_fb", conv_fwd_bwd(128, 128, 4, 3, 1), 10), ("conv1x1_64_128_4_fb", conv_fwd_bwd(64, 128, 4, 1, 1), 20),
]
for name, f, reps in cases:
    print(f"{name} {median_ms(f, reps):.4f}")
