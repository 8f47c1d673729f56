"""Pretraining loop: determinism, exact resume, non-finite steps, checkpoints and schedules (CPU, stand-in module)."""
import csv
import json
import math
import os
import pickle
import shutil
import signal

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from ecgvit.errors import RunStopped
from ecgvit.train import (
    CheckpointError,
    MethodSettingsError,
    TrainConfig,
    WarmupCosine,
    WarmupPlateau,
    list_checkpoints,
    load_best,
    resolve_warmup_epochs,
    train,
)
from ecgvit.train.checkpoint import clean_partial, load_checkpoint, read_checkpoint_state, save_checkpoint
from ecgvit.train.loop import check_same_method, seed_everything
from ecgvit.train.stop import StopRequests

pytestmark = pytest.mark.usefixtures('one_thread')


L = 100


class StandIn(nn.Module):
    """A miniature masked-reconstruction + momentum-queue model: random masks, an EMA copy and a queue buffer, the
    state a MoCo/MAE wrapper carries across a resume."""

    def __init__(self, length: int = L) -> None:
        super().__init__()
        self.enc = self._encoder(length)
        self.dec = nn.Linear(16, 12 * length)
        self.key = self._encoder(length)
        self.key.load_state_dict(self.enc.state_dict())
        for p in self.key.parameters():
            p.requires_grad = False
        self.register_buffer('queue', nn.functional.normalize(torch.randn(16, 16), dim=1))
        self.register_buffer('ptr', torch.zeros((), dtype=torch.long))

    @staticmethod
    def _encoder(length: int) -> nn.Module:
        return nn.Sequential(nn.Conv1d(12, 8, 25, stride=25), nn.GELU(), nn.Flatten(), nn.Linear(8 * length // 25, 16))

    def forward(self, x: torch.Tensor) -> dict:
        mask = (torch.rand(x.shape[0], 1, x.shape[2]) > 0.5).float()
        z = self.enc(x * mask)
        rec = self.dec(z).view_as(x)
        mae = (((rec - x) ** 2) * (1 - mask)).mean()
        q = nn.functional.normalize(z, dim=1)
        with torch.no_grad():
            if self.training:
                for pk, pq in zip(self.key.parameters(), self.enc.parameters()):
                    pk.mul_(0.9).add_(pq.detach(), alpha=0.1)
            k = nn.functional.normalize(self.key(x + 0.1 * torch.randn_like(x)), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.clone().t()], 1) / 0.2
        moco = nn.functional.cross_entropy(logits, torch.zeros(x.shape[0], dtype=torch.long))
        if self.training:
            with torch.no_grad():
                n = k.shape[0]
                idx = (self.ptr + torch.arange(n)) % self.queue.shape[0]
                self.queue[idx] = k
                self.ptr.fill_((int(self.ptr) + n) % self.queue.shape[0])
        return {'loss': moco + mae, 'loss_mae': mae.detach(), 'loss_moco': moco.detach()}


def _data(n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 12, L, generator=g))


def _run(out, epochs=3, seed=1, **kw):
    seed_everything(seed)
    model = StandIn()
    cfg = TrainConfig(output_dir=str(out), epochs=epochs, seed=seed,
                      **{**dict(batch_size=8, lr=1e-3, warmup_epochs=1, amp='fp32', progress=False, log_every=1), **kw})
    summary = train(model, _data(), _data(16, 1), cfg)
    return model, summary


def _losses(out):
    with open(out / 'metrics.csv', newline='') as f:
        return [(r['kind'], r['step'], r['loss'], r['val_loss']) for r in csv.DictReader(f)]


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_losses(tmp_path):
    m1, s1 = _run(tmp_path / 'a')
    m2, s2 = _run(tmp_path / 'b')
    assert s1['steps'] == 15 and s1['epochs'] == 3
    assert _losses(tmp_path / 'a') == _losses(tmp_path / 'b')
    assert _same_state(m1, m2)
    cfg = json.loads((tmp_path / 'a' / 'config.json').read_text())
    assert cfg['train']['batch_size'] == 8 and cfg['amp_resolved'] == 'fp32'
    assert cfg['machine']['device'] == 'cpu' and cfg['machine']['cpu'] and cfg['machine']['gpu'] is None


def test_resume_mid_epoch_is_exact(tmp_path):
    full, summary = _run(tmp_path / 'full', save_every=2, keep_last=0)
    steps = [int(p.name.split('-')[1]) for p in list_checkpoints(tmp_path / 'full' / 'checkpoints')]
    assert steps == [2, 4, 5, 6, 8, 10, 12, 14, 15]  # every 2 steps, each epoch's end (5 steps each) and the last
    # Pretend the run died right after step 6 (mid-epoch 1): drop every later checkpoint, then resume.
    part = tmp_path / 'part'
    shutil.copytree(tmp_path / 'full', part)
    for p in list_checkpoints(part / 'checkpoints'):
        if int(p.name.split('-')[1]) > 6:
            shutil.rmtree(p)
    resumed, s2 = _run(part, resume=True, save_every=2, keep_last=0)
    assert s2['steps'] == summary['steps']
    assert _same_state(full, resumed)
    assert _losses(part) == _losses(tmp_path / 'full')  # the CSV has no duplicated rows after the resume


def test_resume_from_another_run_into_a_new_folder_carries_its_best_weights(tmp_path, caplog):
    _run(tmp_path / 'a', epochs=2)
    _, best_a = load_best(tmp_path / 'a' / 'checkpoints')
    # Nothing left to train (its epochs are done): the new folder still gets the run's best weights and a
    # checkpoint of its own, and the summary names them.
    with caplog.at_level('INFO', logger='ecgvit.train.loop'):
        _, summary = _run(tmp_path / 'b', epochs=2, resume=str(tmp_path / 'a'))
    assert 'nothing left to train' in caplog.text
    weights_b, best_b = load_best(tmp_path / 'b' / 'checkpoints')
    assert best_b == best_a and best_a['val_loss'] is not None
    assert torch.equal(weights_b['enc.3.weight'], load_file(tmp_path / 'a' / 'checkpoints' / 'best.safetensors')[
        'enc.3.weight'])
    assert summary['last_checkpoint'].startswith(str(tmp_path / 'b' / 'checkpoints'))
    assert [p.name for p in list_checkpoints(tmp_path / 'b' / 'checkpoints')] == ['step-00000010']
    # From an earlier checkpoint, the source's best weights (of a later epoch) are not this run's: not copied.
    _run(tmp_path / 'c', epochs=3, save_every=5, keep_last=0)
    shutil.rmtree(tmp_path / 'c' / 'checkpoints' / 'step-00000015')
    _run(tmp_path / 'd', epochs=1, resume=str(tmp_path / 'c' / 'checkpoints' / 'step-00000005'))
    assert load_best(tmp_path / 'd' / 'checkpoints')[1]['step'] == 5


def test_end_of_epoch_checkpoints_every_n_epochs(tmp_path):
    def steps(out):
        return [int(p.name.split('-')[1]) for p in list_checkpoints(out / 'checkpoints')]

    _run(tmp_path / 'a', epochs=5, save_every=0, save_every_epochs=2, keep_last=0)  # 5 steps per epoch
    assert steps(tmp_path / 'a') == [10, 20, 25]  # the ends of epochs 2 and 4, then the run's last step
    _run(tmp_path / 'b', epochs=2, save_every=0, save_every_epochs=0, keep_last=0)
    assert steps(tmp_path / 'b') == [10]  # only the end of the run
    _run(tmp_path / 'c', epochs=2, keep_last=0)  # the defaults: 500 steps, every epoch
    assert steps(tmp_path / 'c') == [5, 10]


def test_resume_with_other_batch_size_is_refused(tmp_path):
    _run(tmp_path, epochs=1)
    seed_everything(0)
    cfg = TrainConfig(output_dir=str(tmp_path), epochs=2, batch_size=4, amp='fp32', progress=False, resume=True)
    with pytest.raises(ValueError, match='Resume with the same --batch-size'):
        train(StandIn(), _data(), None, cfg)


def test_resume_with_other_method_settings_is_refused(tmp_path):
    method = {'alpha': 40.0, 'shared_pass': False, 'augment': 'default_ecg_augment'}
    _run(tmp_path, epochs=1, save_every=2)
    cfg = TrainConfig(output_dir=str(tmp_path), epochs=2, batch_size=8, lr=1e-3, warmup_epochs=1, seed=1,
                      amp='fp32', progress=False, resume=True, save_every=2)
    # The first run recorded no method settings: nothing to compare, the resume goes ahead.
    seed_everything(1)
    train(StandIn(), _data(), None, cfg, run_config={'pretrainer': dict(method, shared_pass=True)})
    state = read_checkpoint_state(tmp_path / 'checkpoints')  # now they are recorded
    assert state['config']['pretrainer']['shared_pass'] is True and state['step'] == 10
    cfg.epochs = 3
    with pytest.raises(MethodSettingsError, match=r"shared_pass=True there, shared_pass=False here") as err:
        train(StandIn(), _data(), None, cfg, run_config={'pretrainer': method})
    # The loop names no command-line flag (the CLI adds its own hint) and says which setting differs.
    assert '--' not in str(err.value) and err.value.diffs == [('shared_pass', True, False)]


def test_resume_steps_with_this_runs_optimiser_kernel(tmp_path, monkeypatch):
    import ecgvit.train.loop as loop

    fused = loop.create_adam  # a checkpoint written before the optimiser was fused, then resumed now
    monkeypatch.setattr(loop, 'create_adam', lambda params, lr, wd: torch.optim.Adam(params, lr=lr, weight_decay=wd))
    _run(tmp_path, epochs=1, save_every=2)
    groups = read_checkpoint_state(tmp_path / 'checkpoints')['optimizer']['param_groups']
    assert not any(g['fused'] for g in groups)
    monkeypatch.setattr(loop, 'create_adam', fused)
    _run(tmp_path, epochs=2, save_every=2, resume=True)
    groups = read_checkpoint_state(tmp_path / 'checkpoints')['optimizer']['param_groups']
    assert all(g['fused'] for g in groups)


def test_check_same_method_compares_the_settings_both_record():
    saved = {'path': 'ck', 'config': {'pretrainer': {'alpha': 40.0, 'shared_pass': False}}}
    check_same_method(saved, {'alpha': 40.0, 'shared_pass': False})
    with pytest.raises(MethodSettingsError, match="shared_pass=False there, shared_pass=True here"):
        check_same_method(saved, {'alpha': 40.0, 'shared_pass': True})
    with pytest.raises(ValueError, match=r"alpha=40\.0 there, alpha=20\.0 here"):
        check_same_method(saved, {'alpha': 20.0, 'shared_pass': False})
    # A setting only one side knows is not a difference; a run that records none is not checked.
    check_same_method({'config': {'pretrainer': {'alpha': 40.0, 'retired': 1}}}, {'alpha': 40.0, 'new': 2})
    check_same_method(saved, None)
    # A checkpoint from before decoder_pos_init started its decoder positions as normal noise.
    check_same_method(saved, {'alpha': 40.0, 'decoder_pos_init': 'normal'})
    with pytest.raises(MethodSettingsError, match="decoder_pos_init='normal' there, decoder_pos_init='sincos' here"):
        check_same_method(saved, {'alpha': 40.0, 'decoder_pos_init': 'sincos'})


def test_auto_warmup_scales_to_the_run_and_is_recorded(tmp_path):
    assert TrainConfig().warmup_epochs is None  # auto
    # min(20, 0.2 x epochs): never longer than the run, the seed's 20 epochs from 100 epochs on; explicit values kept.
    assert [resolve_warmup_epochs(None, e) for e in (1, 10, 99, 100, 710)] == [0.2, 2.0, 19.8, 20.0, 20.0]
    assert resolve_warmup_epochs(0, 10) == 0.0 and resolve_warmup_epochs(30, 10) == 30.0
    with pytest.raises(ValueError, match='warmup_epochs must be >= 0'):
        resolve_warmup_epochs(-1, 10)
    seed_everything(0)
    cfg = TrainConfig(output_dir=str(tmp_path), epochs=5, batch_size=8, seed=0, amp='fp32', progress=False,
                      save_every=0)
    train(StandIn(), _data(), None, cfg)  # 5 steps per epoch
    resolved = json.loads((tmp_path / 'config.json').read_text())
    assert resolved['train']['warmup_epochs'] == 1.0 and resolved['warmup_steps'] == 5
    # A resumed run keeps the warm-up it started with, although a longer run would get a longer auto warm-up.
    cfg.epochs, cfg.resume = 6, True
    train(StandIn(), _data(), None, cfg)
    resolved = json.loads((tmp_path / 'config.json').read_text())
    assert resolved['train']['warmup_epochs'] == 1.0 and resolved['train']['epochs'] == 6


def test_keep_last_and_best(tmp_path):
    model, summary = _run(tmp_path, save_every=1, keep_last=2)
    ckpts = list_checkpoints(tmp_path / 'checkpoints')
    assert [p.name for p in ckpts] == ['step-00000014', 'step-00000015']
    weights, info = load_best(tmp_path / 'checkpoints', StandIn())
    assert info['epoch'] == summary['best_epoch'] and math.isclose(info['val_loss'], summary['best_val_loss'])
    assert not [p for p in (tmp_path / 'checkpoints').iterdir() if p.name.startswith('.')]


def test_non_finite_steps_are_skipped(tmp_path):
    data = _data()
    data.tensors[0][3, 0, 0] = float('nan')  # one poisoned record: its batch is skipped, every epoch
    seed_everything(0)
    model = StandIn()
    cfg = TrainConfig(output_dir=str(tmp_path), epochs=2, batch_size=8, warmup_epochs=0, amp='fp32', progress=False)
    summary = train(model, data, None, cfg)
    assert summary['skipped_steps'] == 2 and summary['optimizer_steps'] == 8
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    weights = load_file(str(list_checkpoints(tmp_path / 'checkpoints')[-1] / 'model.safetensors'))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_batch_larger_than_dataset(tmp_path):
    cfg = TrainConfig(output_dir=str(tmp_path), epochs=1, batch_size=64, amp='fp32', progress=False)
    with pytest.raises(ValueError, match='batch_size 64 is larger than the training set'):
        train(StandIn(), _data(10), None, cfg)


def test_checkpoint_roundtrip_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = StandIn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 12, L))['loss'].backward()
    opt.step()
    torch.manual_seed(7)
    path = save_checkpoint(tmp_path, 3, model, opt, {'epoch': 1})
    expected = torch.rand(3)
    (tmp_path / '.tmp-step-00000009.123').mkdir()  # debris of a killed write
    (tmp_path / '.tmpAb3_x9').write_bytes(b'x')  # what a killed safetensors save_file leaves beside best.safetensors
    (tmp_path / 'notes.tmp').write_text('kept')  # not debris
    assert sorted(p.name for p in clean_partial(tmp_path)) == ['.tmp-step-00000009.123', '.tmpAb3_x9']
    assert (tmp_path / 'notes.tmp').is_file()
    model2 = StandIn()
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    state = load_checkpoint(tmp_path, model2, opt2)
    assert state['step'] == 3 and state['epoch'] == 1 and state['path'] == str(path)
    assert _same_state(model, model2)
    assert torch.equal(torch.rand(3), expected)  # torch RNG restored
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for pid in s1['state']:
        for k, v in s1['state'][pid].items():
            assert torch.equal(v, s2['state'][pid][k])


def test_a_checkpoint_that_does_not_fit_names_the_mismatch_and_keeps_the_full_list_as_cause(tmp_path):
    save_checkpoint(tmp_path, 1, StandIn(length=L), None, {'epoch': 0})
    with pytest.raises(CheckpointError, match=r"does not fit the model: size mismatch for enc\.3\.weight") as err:
        load_checkpoint(tmp_path, StandIn(length=2 * L))  # the encoder's last layer sees twice the patches
    # The message holds the first mismatch; the cause, every one (shown with the traceback, e.g. ECGVIT_DEBUG=1).
    assert isinstance(err.value.__cause__, RuntimeError) and 'key.3.weight' in str(err.value.__cause__)


def test_warmup_plateau_schedule():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupPlateau(opt, warmup_steps=4, factor=0.5, patience=1)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(4):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs == [0.25, 0.5, 0.75, 1.0, 1.0]
    for loss in (1.0, 1.0, 1.0):  # best, then two epochs without improvement > patience 1
        sched.epoch_end(loss)
    assert sched.get_last_lr()[0] == 0.5
    state = json.loads(json.dumps(sched.state_dict()))
    sched2 = WarmupPlateau(torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0), warmup_steps=4)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr()[0] == 0.5


def test_warmup_cosine_schedule():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, warmup_steps=2, total_steps=10)
    for _ in range(10):
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)


def test_amp_auto_is_measured_once_and_explicit_choices_are_kept(monkeypatch, tmp_path):
    from ecgvit.train import runtime as loop

    calls = []
    monkeypatch.setenv('ECGVIT_CACHE_DIR', str(tmp_path))  # no decision stored yet for this machine
    monkeypatch.setattr(loop, '_AMP_CACHE', {})
    monkeypatch.setattr(loop, '_probe_cpu_bf16', lambda: calls.append(1) or True)
    cpu = torch.device('cpu')
    assert loop.resolve_amp_dtype('auto', cpu) is torch.bfloat16
    assert loop.resolve_amp_dtype('auto', cpu) is torch.bfloat16 and len(calls) == 1  # cached per process
    assert loop.resolve_amp_dtype('fp32', cpu) is None and loop.resolve_amp_dtype('bf16', cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="Unknown amp setting 'fp16'"):
        loop.resolve_amp_dtype('fp16', cpu)
    monkeypatch.undo()
    with torch.no_grad():  # the real probe runs a block forward + backward, also when called under no_grad
        assert isinstance(loop._probe_cpu_bf16(reps=1), bool)


def test_amp_auto_is_decided_once_per_machine_and_kept(monkeypatch, tmp_path):
    """Issue 18, item 8: a timing probe that would answer differently each run is asked once per machine."""
    import json

    from ecgvit.train import runtime

    answers = iter([False, True, False, True])
    monkeypatch.setenv('ECGVIT_CACHE_DIR', str(tmp_path))
    monkeypatch.setattr(runtime, '_probe_cpu_bf16', lambda: next(answers))
    cpu = torch.device('cpu')
    for _ in range(3):  # three "processes": the in-process memo is empty each time
        monkeypatch.setattr(runtime, '_AMP_CACHE', {})
        assert runtime.resolve_amp_dtype('auto', cpu) is None  # the first answer, every time
    stored = json.loads((tmp_path / 'amp.json').read_text())
    assert [v['bf16'] for v in stored.values()] == [False] and runtime.amp_cache_file() == tmp_path / 'amp.json'
    (tmp_path / 'amp.json').write_text('not json')  # a damaged file: measured again, and rewritten
    monkeypatch.setattr(runtime, '_AMP_CACHE', {})
    assert runtime.resolve_amp_dtype('auto', cpu) is torch.bfloat16
    assert list(json.loads((tmp_path / 'amp.json').read_text()).values())[0]['bf16'] is True


def test_a_bf16_run_resumed_on_a_cpu_without_bf16_units_is_kept_in_bf16_with_a_warning(monkeypatch, caplog):
    """A resumed run keeps its dtype (exactness), but on a CPU that emulates bf16 (an AVX2-only machine here: 0.3
    GFLOP/s) it says why the steps are slow and what to do."""
    from ecgvit.train import loop
    from ecgvit.train.config import TrainConfig
    from ecgvit.train.distributed import DistInfo

    cfg, info = TrainConfig(amp='auto'), DistInfo()
    monkeypatch.setattr(loop, 'cpu_has_native_bf16', lambda: False)
    with caplog.at_level('WARNING', logger='ecgvit.train.loop'):
        assert loop._run_amp({'amp': 'bf16'}, cfg, info) is torch.bfloat16
        assert loop._run_amp({'amp': 'fp32'}, cfg, info) is None
    assert len(caplog.records) == 1 and 'no bf16 matrix units' in caplog.text
    caplog.clear()
    with caplog.at_level('WARNING', logger='ecgvit.train.loop'):  # a new run asking for bf16 by name is warned too
        assert loop._run_amp({'amp': None}, TrainConfig(amp='bf16'), info) is torch.bfloat16
        assert loop._run_amp({'amp': None}, TrainConfig(amp='fp32'), info) is None
    assert len(caplog.records) == 1 and '--amp auto or fp32' in caplog.text
    caplog.clear()
    monkeypatch.setattr(loop, 'cpu_has_native_bf16', lambda: True)
    assert loop._run_amp({'amp': 'bf16'}, cfg, info) is torch.bfloat16 and not caplog.records
    assert loop._run_amp({'amp': None}, TrainConfig(amp='bf16'), info) is torch.bfloat16 and not caplog.records


def test_cpu_flags_reads_the_flag_names_only(monkeypatch, tmp_path):
    """One reader of ``/proc/cpuinfo`` for the amp decision, the bf16 warning and the benchmarks' machine record: the
    flag names of the first ``flags`` line, without the key and colon; empty where the file cannot be read."""
    from ecgvit.train import runtime

    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n'
                       'processor\t: 1\nflags\t\t: fpu\n')
    real_open = open
    monkeypatch.setattr('builtins.open', lambda f, *a, **k: real_open(cpuinfo if f == '/proc/cpuinfo' else f, *a, **k))
    assert runtime.cpu_flags() == {'fpu', 'avx2', 'avx512_bf16'} and runtime.cpu_has_native_bf16()
    cpuinfo.unlink()
    assert runtime.cpu_flags() == set() and not runtime.cpu_has_native_bf16()


def test_a_fresh_run_refuses_a_folder_that_holds_a_run(tmp_path):
    """Issue 18, item 1: no silent overwrite of a finished run's metrics, best weights and checkpoints."""
    from ecgvit.errors import RunExistsError

    _run(tmp_path / 'a', epochs=2, save_every=2)
    before = {p.name: p.read_bytes() for p in (tmp_path / 'a').rglob('*') if p.is_file()}
    with pytest.raises(RunExistsError, match=r'already holds a training run \(metrics\.csv.*Resume it.*Nothing was '):
        _run(tmp_path / 'a', epochs=3, seed=2)
    after = {p.name: p.read_bytes() for p in (tmp_path / 'a').rglob('*') if p.is_file()}
    assert after == before
    _run(tmp_path / 'a', epochs=3, resume=True)  # continuing it is what resume is for


def test_a_fresh_run_into_a_folder_in_use_stops_and_the_lock_ends_with_its_holder(tmp_path):
    """Two processes starting into one empty folder: the second stops (flock locks are per open file, so a second
    lock in this process stands for another process); a released lock is free again."""
    from ecgvit.errors import RunInUseError
    from ecgvit.train.run_lock import LOCK_NAME, RunLock

    with RunLock(tmp_path / 'a'):
        with pytest.raises(RunInUseError, match=r'in use by another training process \(pid \d+ on host'):
            _run(tmp_path / 'a', epochs=1)
        assert [p.name for p in (tmp_path / 'a').iterdir()] == [LOCK_NAME]
    _run(tmp_path / 'a', epochs=1)
    with RunLock(tmp_path / 'b'):
        (tmp_path / 'b' / LOCK_NAME).write_text('\x00 not json')  # a holder that wrote something else
        with pytest.raises(RunInUseError, match='holder unknown'):
            RunLock(tmp_path / 'b').acquire()
    _run(tmp_path / 'b', epochs=1)


@pytest.mark.parametrize('lr', [1e6, 1e30])
def test_a_run_that_diverges_is_an_error_not_a_success(tmp_path, lr):
    """Issue 18, item 4: lr 1e6 used to skip step after step with warnings, exit 0 and export non-finite weights."""
    from ecgvit.errors import TrainingDivergedError

    with pytest.raises(TrainingDivergedError, match=r'Training diverged: .*Lower the learning rate \(lr=1e\+'):
        _run(tmp_path / 'a', lr=lr)
    assert (tmp_path / 'a' / 'metrics.csv').is_file()  # kept for inspection


def test_a_warm_up_longer_than_the_run_is_warned_where_the_config_is_used(caplog):
    from ecgvit.train.validate import validate_train_config

    cfg = TrainConfig(epochs=3, warmup_epochs=7.25)
    message = ('--warmup-epochs (warmup_epochs) is 7.25 epochs, longer than the run (3 epochs): the learning rate '
               'never reaches --lr (lr).')
    with caplog.at_level('WARNING', logger='ecgvit.train.validate'):
        validate_train_config(cfg, warn=False)  # an early check (the CLI's, before its data): train() warns
        assert message not in caplog.text
        validate_train_config(cfg)
        validate_train_config(cfg)  # every run that uses it is told (no once-per-process memo)
    assert [r.getMessage() for r in caplog.records].count(message) == 2


class _SignalsAt(StandIn):
    """StandIn that sends this process ``signums`` during its ``at``-th training forward (a scheduler's SIGTERM,
    a Ctrl-C), so the signal lands mid-step."""

    def __init__(self, at: int, *signums: int) -> None:
        super().__init__()
        self.at, self.signums, self.calls = at, signums, 0

    def forward(self, x: torch.Tensor) -> dict:
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                for signum in self.signums:
                    os.kill(os.getpid(), signum)
        return super().forward(x)


def _run_model(model, out, epochs=3, seed=1, **kw):
    cfg = TrainConfig(output_dir=str(out), epochs=epochs, seed=seed,
                      **{**dict(batch_size=8, lr=1e-3, warmup_epochs=1, amp='fp32', progress=False, log_every=1), **kw})
    return train(model, _data(), _data(16, 1), cfg)


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_the_resume_is_exact(tmp_path):
    full, _ = _run(tmp_path / 'full')
    seed_everything(1)
    with pytest.raises(RunStopped) as stopped:
        _run_model(_SignalsAt(7, signal.SIGTERM), tmp_path / 'part')  # step 7: mid-epoch 1 (5 steps per epoch)
    assert (stopped.value.signum, stopped.value.step) == (signal.SIGTERM, 7)
    assert stopped.value.exit_code == 143  # what `ecgvit pretrain` and supervised_floor.py exit with
    assert '--resume' in str(stopped.value)
    again = pickle.loads(pickle.dumps(stopped.value))  # whole, e.g. from a worker process
    assert (again.signum, again.step, again.checkpoint, str(again)) == (
        stopped.value.signum, 7, stopped.value.checkpoint, str(stopped.value))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the run's handler is gone with the run
    # The step the signal interrupted was finished and saved (save_every is 500: the stop wrote it, after epoch 0's).
    assert [p.name for p in list_checkpoints(tmp_path / 'part' / 'checkpoints')] == ['step-00000005', 'step-00000007']
    resumed, summary = _run(tmp_path / 'part', resume=True)
    assert summary['steps'] == 15
    assert _same_state(full, resumed)
    assert _losses(tmp_path / 'part') == _losses(tmp_path / 'full')


def test_a_second_signal_stops_at_once_and_a_signal_in_the_last_step_lets_the_run_finish(tmp_path):
    # Python's own Ctrl-C handler, as a program has it (a test runner's worker may have set another).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _second_signal_and_last_step(tmp_path)
    finally:
        signal.signal(signal.SIGINT, before)


def _second_signal_and_last_step(tmp_path):
    seed_everything(1)
    with pytest.raises(KeyboardInterrupt) as hard:
        _run_model(_SignalsAt(7, signal.SIGINT, signal.SIGINT), tmp_path / 'twice')
    assert not isinstance(hard.value, RunStopped)  # no wait for the step, no checkpoint (epoch 0's end is the last)
    assert [p.name for p in list_checkpoints(tmp_path / 'twice' / 'checkpoints')] == ['step-00000005']
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seed_everything(1)
    summary = _run_model(_SignalsAt(15, signal.SIGTERM), tmp_path / 'last')  # nothing left to stop
    assert summary['steps'] == 15 and (tmp_path / 'last' / 'summary.json').is_file()


def test_stop_requests_keep_a_signal_the_caller_ignores_or_handles():
    def own(signum, frame):
        pass

    before = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, own)
    try:
        with StopRequests() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # `nohup ... &`: Ctrl-C was never asked for
            assert signal.getsignal(signal.SIGTERM) is own
        assert stop.signum is None
        with StopRequests(enabled=False):
            signal.signal(signal.SIGINT, signal.default_int_handler)
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
