"""Issue #27 item 4: float16 gradients under a GradScaler-like scale, SupCon mean.
old: closs rounds the upstream-1 gradient to float16, then autograd multiplies by the scale;
new: the scaled upstream goes into closs's backward, which rounds g*S once.
Usage: CLOSS_LIBRARY=build/host/libcloss.so python3 bench/f16_loss_scale.py 4096 (bench/NOTES.md)."""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "python"))
import torch, closs
M, D, S = int(sys.argv[1]), 128, 65536.0
g = torch.Generator().manual_seed(0)
z = torch.randn(M, D, generator=g).to(torch.float16)
labels = torch.randint(0, M // 4, (M,), generator=g)
t = time.time()
z64 = z.to(torch.float64).requires_grad_(True)
closs.supcon_loss(z64, labels).backward()
exact = z64.grad
old = exact.to(torch.float16).to(torch.float64) * S / S
new = (exact * S).to(torch.float16).to(torch.float64) / S
zf = z.clone().requires_grad_(True)
(closs.supcon_loss(zf, labels) * S).backward()
binding = zf.grad.to(torch.float64) / S
tiny = torch.finfo(torch.float16).tiny
def rel(a): return ((a - exact).norm() / exact.norm()).item()
print("M=%d D=%d scale=%g: |g| max %.3g, below f16 normal %.1f%%, old flushed to 0: %.2f%%" % (
    M, D, S, exact.abs().max(), 100 * (exact.abs() < tiny).double().mean(),
    100 * ((old == 0) & (exact != 0)).double().mean()))
print("relative error: old (round at upstream 1, then scale) %.2e; scale inside %.2e; binding now %.2e (%.0fs)" % (
    rel(old), rel(new), rel(binding), time.time() - t))
