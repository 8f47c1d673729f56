"""Atomic writes (ecgvit.files): a failed write leaves the previous file whole and no temporary file behind."""
import json

import numpy as np
import pytest

from ecgvit.files import atomic_copy, atomic_open, atomic_save_npy, atomic_savez, atomic_write_text


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / 'embeddings.npy'
    atomic_save_npy(path, np.arange(5, dtype=np.float32))
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_open(path, 'wb') as f:
            f.write(b'half a file')
            raise RuntimeError('disk full')
    assert np.load(path).tolist() == [0, 1, 2, 3, 4]
    assert [p.name for p in tmp_path.iterdir()] == ['embeddings.npy']  # no temporary file left


def test_writes_land_whole_and_readable(tmp_path):
    atomic_write_text(tmp_path / 'r.json', json.dumps({'auroc': 0.9}))
    atomic_savez(tmp_path / 'p.npz', y=np.ones(3), prob=np.zeros(3))
    atomic_copy(tmp_path / 'r.json', tmp_path / 'copy.json')
    assert json.loads((tmp_path / 'copy.json').read_text()) == {'auroc': 0.9}
    assert np.load(tmp_path / 'p.npz')['y'].tolist() == [1, 1, 1]
    assert oct((tmp_path / 'p.npz').stat().st_mode & 0o777) == oct(0o644)  # shared results, not a private temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ['copy.json', 'p.npz', 'r.json']


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError):
        atomic_save_npy(tmp_path / 'x.npy', np.array([{'a': 1}], dtype=object))
    assert not list(tmp_path.iterdir())


def test_append_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_open(tmp_path / 'x.txt', 'a'):
            pass


def test_a_full_disk_names_the_file(tmp_path):
    path = tmp_path / 'ids.txt'
    with pytest.raises(OSError, match=r'could not write .*ids.txt \(No space left on device\)') as e:
        with atomic_open(path, 'w'):
            raise OSError(28, 'No space left on device')
    assert e.value.errno == 28 and not list(tmp_path.iterdir())


def test_safetensors_land_whole_and_an_eval_folder_holds_one_runs_set(tmp_path, monkeypatch):
    import importlib

    import torch
    from safetensors.torch import load_file

    from ecgvit.files import atomic_save_safetensors

    probe_module = importlib.import_module('ecgvit.eval.linear_probe')  # the package exports the function by that name

    atomic_save_safetensors(tmp_path / 'w.safetensors', {'a': torch.arange(3.0)}, metadata={'format': 'pt'})
    assert load_file(tmp_path / 'w.safetensors')['a'].tolist() == [0, 1, 2]
    out = tmp_path / 'probe'
    head = torch.nn.Linear(2, 1)
    probe_module.save_eval_outputs(str(out), {'auroc': 0.9}, np.ones(3), np.zeros(3), ['a', 'b', 'c'], head)
    assert sorted(p.name for p in out.iterdir()) == ['model.safetensors', 'predictions.npz', 'results.json']

    # A rerun that dies writing the classifier leaves no results.json beside files of two runs.
    def disk_full(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(probe_module, 'atomic_save_safetensors', disk_full)
    with pytest.raises(OSError):
        probe_module.save_eval_outputs(str(out), {'auroc': 0.5}, np.zeros(3), np.ones(3), None, head)
    assert not (out / 'results.json').exists()


def test_owned_tensors_writes_what_safetensors_refuses_as_given(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from ecgvit.files import atomic_save_safetensors, owned_tensors

    shared = torch.arange(12.0).reshape(3, 4)
    state = {'weight': shared, 'tied': shared, 'transposed': shared.t()}  # shared storage and a non-contiguous view
    with pytest.raises(RuntimeError):  # the reason the helper exists
        save_file(state, str(tmp_path / 'raw.safetensors'))
    copy = owned_tensors(state)
    atomic_save_safetensors(tmp_path / 'owned.safetensors', copy)
    back = load_file(str(tmp_path / 'owned.safetensors'))
    assert torch.equal(back['transposed'], shared.t()) and torch.equal(back['tied'], shared)
    shared.zero_()  # the copy owns its memory: a later step does not change what was saved
    assert copy['weight'].sum().item() == 66.0
