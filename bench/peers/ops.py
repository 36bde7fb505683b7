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

cases = [
    ("add_4M", lambda: a + b, 30), ("mul_scalar_4M", lambda: a * 2.0, 30), ("exp_4M", lambda: a.exp(), 30),
    ("tanh_4M", lambda: a.tanh(), 30), ("relu_4M", lambda: a.relu(), 30),
    ("add_transposed_2048", lambda: m + m.t(), 10), ("sum_4M", lambda: a.sum(), 30),
    ("sum_dim0_2048", lambda: m.sum(0), 30), ("sum_dim1_2048", lambda: m.sum(1), 30),
    ("max_dim1_2048", lambda: m.max(1), 30), ("log_softmax_256x1000", lambda: torch.log_softmax(x, 1), 50),
    ("matmul_512", lambda: s512a @ s512b, 20), ("bmm_64x64x64", lambda: bat_a @ bat_b, 30),
    ("linear_128x784_256", lambda: torch.nn.functional.linear(xb, w), 50), ("mlp_fwd_bwd_128", mlp, 30),
]
for name, f, reps in cases:
    print(f"{name} {median_ms(f, reps):.4f}")
