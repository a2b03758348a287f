# temporary GPU profiling script of the train helper (deleted after use)
import time, torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
from train import load_train_config
from train.data import StoreData, open_store, store_dims, batch_indices, epoch_order
from train.loop import model_config_for, build_run_model, forward, make_optimizers
cfg = load_train_config(None, {"store": "/tmp/m/feats.h5"})
st = open_store(cfg.store); d = store_dims(st)
mc = model_config_for("shmamba", {"backend": "mamba-ssm"}, d)
m = build_run_model(mc).cuda(); opts = make_optimizers(m, cfg)
data = StoreData(st, ["train"], torch.device("cuda"), with_tokens=False)
for B in (64, 256):
    idx = batch_indices(epoch_order(len(data.splits["train"]), torch.Generator().manual_seed(0)), B)
    torch.cuda.synchronize(); t = time.time(); bs = list(data.batches("train", idx)); torch.cuda.synchronize()
    print(f"B={B}: gather all {len(idx)} batches of an epoch: {time.time()-t:.3f}s")
    def step(b):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = forward(m, b)
        l = F.cross_entropy(out.logits.float(), b.answer) + 0.1 * out.align_loss
        l.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        for o in opts: o.step(); o.zero_grad()
    for b in bs[:10]: step(b)
    torch.cuda.synchronize(); t = time.time()
    for b in bs[10:60]: step(b)
    torch.cuda.synchronize(); print(f"B={B}: train step {(time.time()-t)/50*1000:.2f} ms")
    with torch.no_grad():
        torch.cuda.synchronize(); t = time.time()
        for b in bs[10:60]:
            with torch.autocast("cuda", dtype=torch.bfloat16): forward(m, b)
        torch.cuda.synchronize(); print(f"B={B}: forward only {(time.time()-t)/50*1000:.2f} ms")
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
    for b in bs[10:20]: step(b)
    torch.cuda.synchronize()
ka = p.key_averages()
print(ka.table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=50))
print(ka.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50))
