"""Model cards a machine can read: the Hugging Face metadata (datasets, metrics, model-index) is generated from
results rows and parses back with huggingface_hub's own card tools (offline: no ModelCard.validate)."""
import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import EvalResult, ModelCard
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

import ecgvit
from benchmarks import release_weights
from ecgvit import cards, hub

REPO = Path(__file__).resolve().parents[1]
ROWS = [
    {'task': 'ptbxl_superdiagnostic', 'protocol': 'linear', 'metric': 'auroc_macro', 'value': 0.7931},
    {'task': 'ptbxl_superdiagnostic', 'protocol': 'finetune', 'metric': 'auroc_macro', 'value': 0.8004},
    {'task': 'ptbxl_superdiagnostic', 'protocol': 'linear', 'metric': 'f1_macro', 'value': 0.565},
    {'task': 'ludb_rhythm', 'protocol': 'linear', 'metric': 'auc_ovo', 'value': 0.531},
    {'task': 'ludb_rhythm', 'protocol': 'linear', 'metric': 'f1_macro', 'value': float('nan')},  # not computed
]


def _round_trip(text: str):
    card = ModelCard(text)  # huggingface_hub parses the YAML into ModelCardData
    data = card.data.to_dict()
    name, results = model_index_to_eval_results(data['model-index'])
    assert eval_results_to_model_index(name, results) == data['model-index']
    return card, data, name, results


def test_metadata_round_trips_through_huggingface_hub():
    meta = cards.card_data('ecg_vit_mae_moco', datasets=['ptbxl', 'cinc2021_samples', 'code15_samples'],
                           eval_rows=ROWS, tags=['mae-moco'])
    text = cards.front_matter(meta) + '# ecg_vit_mae_moco\n\nbody\n'
    card, data, name, results = _round_trip(text)
    assert name == 'ecg_vit_mae_moco' and card.text.strip() == '# ecg_vit_mae_moco\n\nbody'
    assert data['library_name'] == 'timm' and data['license'] == 'apache-2.0'
    assert data['pipeline_tag'] == 'feature-extraction' and {'ecg', 'timm', 'mae-moco'} <= set(data['tags'])
    assert data['datasets'] == ['ptb-xl', 'physionet-challenge-2021', 'code-15', 'ludb']
    assert data['metrics'] == ['roc_auc', 'f1']
    # every row with a number, and nothing else, with its value, task, dataset and protocol
    assert len(results) == 4 and results == card.data.eval_results == cards.eval_results(ROWS)
    got = {(r.dataset_type, r.dataset_config, r.metric_name): r.metric_value for r in results}
    assert got == {('ptb-xl', 'superdiagnostic', 'macro AUROC (linear probe)'): 0.7931,
                   ('ptb-xl', 'superdiagnostic', 'macro AUROC (fine-tuning)'): 0.8004,
                   ('ptb-xl', 'superdiagnostic', 'macro F1 (linear probe)'): 0.565,
                   ('ludb', 'rhythm', 'macro AUC, one-vs-one (linear probe)'): 0.531}
    assert all(isinstance(r, EvalResult) and r.dataset_split == 'test' for r in results)
    # one model-index result per task and dataset, the protocols as metrics inside it
    assert [len(r['metrics']) for r in data['model-index'][0]['results']] == [3, 1]


def test_values_follow_the_rows():
    rows = [dict(r, value=r['value'] / 2) for r in ROWS[:1]]
    _, data, _, results = _round_trip(cards.front_matter(cards.card_data('m', eval_rows=rows)) + 'x\n')
    assert results[0].metric_value == round(0.7931 / 2, 4) and data['datasets'] == ['ptb-xl']


def test_benchmark_and_suite_rows():
    bench = [
        {'method': 'mae_moco', 'protocol': 'linear', 'auroc_macro': '0.79', 'auroc_macro_lo': '0.7',
         'auroc_macro_hi': '0.86', 'auc_ovo': '', 'f1_macro': '0.5', 'n_test': '64', 'error': ''},
        {'method': 'mae_moco', 'protocol': 'finetune', 'error': 'out of memory'},
        {'method': 'random', 'protocol': 'linear', 'auroc_macro': '0.7', 'error': ''},
    ]
    rows = cards.benchmark_rows(bench, 'mae_moco', 'ptbxl_superdiagnostic')
    assert [(r['protocol'], r['metric'], r['value']) for r in rows] == [('linear', 'auroc_macro', 0.79),
                                                                          ('linear', 'f1_macro', 0.5)]
    assert rows[0]['ci_lo'] == 0.7 and rows[0]['ci_hi'] == 0.86
    suite = [{'task': 'ptbxl_superdiagnostic', 'metric': 'auroc', 'encoder': 'mae_moco', 'fraction': '1.0',
              'mean': '0.8', 'ci_lo': '0.75', 'ci_hi': '0.85', 'n_test': '66'},
             {'task': 'age_ge60', 'metric': 'auroc_within', 'encoder': 'mae_moco', 'fraction': '1.0', 'mean': '0.6'},
             {'task': 'ptbxl_superdiagnostic', 'metric': 'auroc', 'encoder': 'mae_moco', 'fraction': '0.1',
              'mean': '0.7'},
             {'task': 'ptbxl_superdiagnostic', 'metric': 'auroc', 'encoder': 'random', 'fraction': '1.0',
              'mean': '0.6'}]
    results = cards.eval_results(cards.suite_rows(suite, 'mae_moco'))
    assert [(r.dataset_type, r.metric_type, r.metric_value) for r in results] == [
        ('ptb-xl', 'roc_auc', 0.8), ('ecgvit-pool', 'roc_auc', 0.6)]
    assert results[1].dataset_config == 'age_ge60'


def test_save_pretrained_card_carries_the_metadata(tmp_path):
    model = ecgvit.create_model('ecg_vit_tiny', embed_dim=32, depth=1, num_heads=2)
    plain = hub.save_pretrained(model, tmp_path / 'plain', pretrained_cfg={'pretrain_method': 'mae_moco'})
    card = ModelCard.load(plain / 'README.md')
    assert card.data.library_name == 'timm' and 'mae-moco' in card.data.tags
    assert card.data.eval_results is None and 'model-index' not in card.data.to_dict()
    out = hub.save_pretrained(model, tmp_path / 'card', card_metadata={'datasets': ['ptbxl'], 'eval_rows': ROWS})
    card, data, name, results = _round_trip((out / 'README.md').read_text())
    assert name == 'ecg_vit_tiny' and results == cards.eval_results(ROWS) and data['datasets'] == ['ptb-xl', 'ludb']
    assert 'Not for clinical use' in card.text and '## Input' in card.text


def test_parse_eval_table_inverts_eval_table(tmp_path):
    """The parser the shipped cards' metadata were refreshed with reads back what release_weights.eval_table writes."""
    written = {
        'ptbxl_superdiagnostic': [{'method': 'mae_moco', 'protocol': 'linear', 'auroc_macro': 0.7934,
                                   'auroc_macro_lo': 0.7091, 'auroc_macro_hi': 0.8681, 'auc_ovo': '',
                                   'f1_macro': 0.5651, 'f1_macro_lo': 0.448, 'f1_macro_hi': 0.66, 'n_test': 64}],
        'ludb_rhythm': [{'method': 'mae_moco', 'protocol': 'finetune', 'auroc_macro': '', 'auroc_ovr': 0.5431,
                         'auroc_ovr_lo': 0.288, 'auroc_ovr_hi': 0.743, 'auc_ovo': 0.549, 'auc_ovo_lo': 0.286,
                         'auc_ovo_hi': 0.764, 'f1_macro': 0.2, 'f1_macro_lo': 0.167, 'f1_macro_hi': 0.296,
                         'n_test': 30}],
    }
    for task, rows in written.items():
        (tmp_path / task).mkdir()
        with open(tmp_path / task / 'results.csv', 'w', newline='') as f:
            w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
    parsed = release_weights.parse_eval_table(release_weights.eval_table(tmp_path))
    direct = release_weights.card_metadata('mae_moco', release_weights._eval_results(tmp_path), [])['eval_rows']
    via_card = release_weights.card_metadata('mae_moco', parsed, [])['eval_rows']
    assert [(r['task'], r['protocol'], r['metric']) for r in via_card] == \
           [(r['task'], r['protocol'], r['metric']) for r in direct]
    assert all(abs(a['value'] - b['value']) <= 5e-4 for a, b in zip(via_card, direct))  # the table's 3 decimals
    with pytest.raises(ValueError, match='no evaluation table'):
        release_weights.parse_eval_table('# a card without one\n')


@pytest.mark.parametrize('name', ['ecg_vit_mae_moco', 'ecg_vit_mae_nextclip'])
def test_shipped_cards_metadata_is_generated_from_their_tables(name, tmp_path):
    shipped = (REPO / 'weights' / name / 'README.md').read_text()
    card, data, model_name, results = _round_trip(shipped)
    method = name.removeprefix('ecg_vit_')
    assert model_name == name and data['library_name'] == 'timm' and method.replace('_', '-') in data['tags']
    assert {'ptb-xl', 'ludb', 'physionet-challenge-2021', 'code-15'} <= set(data['datasets'])
    # Every shipped card is paired evidence only: a suite block against random init, the ablation, the distance.
    assert '| task | method | protocol |' not in card.text and 'CI overlaps' not in card.text
    assert '### Ablation' in card.text and '| distance from init |' in card.text
    suite = release_weights.parse_suite_table(card.text)
    headline = next(r for r in results if r.dataset_type == 'ptb-xl' and r.dataset_config == 'superdiagnostic'
                    and r.metric_type == 'roc_auc')
    if '**Release gate**' in card.text:  # a card `benchmarks/ship_weights.py ship` wrote from a gate's suite run
        gate = re.search(r'outputs in `([^`]+)`', card.text).group(1)
        decision = json.loads((REPO / gate / 'gate.json').read_text())['decisions'][name]
        assert headline.metric_value == round(decision['score'], 3)
        assert decision['passed'] and hub.sha256_file(REPO / 'weights' / name / 'model.safetensors') in card.text
    else:  # a first-release card brought up to the suite by `ship_weights.py cards`: its metadata is its suite block
        (row,) = [r for r in suite if r['task'] == 'ptbxl_superdiagnostic']
        assert headline.metric_value == float(row['mean'])
    # regenerating the metadata from the card's own tables reproduces it byte for byte, weights and config untouched
    folder = tmp_path / 'weights' / name
    folder.mkdir(parents=True)
    for f in ('README.md', 'config.json'):
        shutil.copy(REPO / 'weights' / name / f, folder / f)
    release_weights.refresh_cards(tmp_path / 'weights', shipped={method: name})
    assert (folder / 'README.md').read_text() == shipped
    if '**Release gate**' not in card.text:  # and its suite block is the committed suite output (issue 13)
        results_csv = REPO / 'benchmarks' / 'results' / 'suite_shipped_2026-11-30' / 'results.csv'
        release_weights.refresh_cards(tmp_path / 'weights', results_csv, shipped={method: name})
        assert (folder / 'README.md').read_text() == shipped
    assert (folder / 'config.json').read_bytes() == (REPO / 'weights' / name / 'config.json').read_bytes()


def test_pretrained_weights_untouched():
    """The cards changed, the weights did not: the registry's sha256 still matches the shipped files."""
    from ecgvit.weights import WEIGHTS_SHA256

    for name, digest in WEIGHTS_SHA256.items():
        assert hub.sha256_file(REPO / 'weights' / name / 'model.safetensors') == digest


def test_pool_sources_from_the_cache_index_and_from_a_card(tmp_path):
    with open(tmp_path / 'index.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['record_id', 'label'])
        w.writerows([['ptbxl/00001_hr@0', ''], ['code15_samples/123@0', ''], ['ptbxl/00002_hr@0', '']])
    assert release_weights._pool_sources(tmp_path) == ['code15_samples', 'ptbxl']
    assert release_weights._pool_sources(tmp_path / 'missing') == []
    note = 'Exact counts: 3 records, 3 windows (records/windows per source: code15_samples 1/1, ptbxl 2/2).'
    assert release_weights.parse_pool_sources(note) == ['code15_samples', 'ptbxl']
    meta = release_weights.card_metadata('mae_moco', {}, ['code15_samples', 'ptbxl'])
    assert cards.card_data('m', **meta).datasets == ['code-15', 'ptb-xl'] and meta['eval_rows'] == []


def test_suite_table_comes_from_the_rows_and_replaces_itself():
    def row(encoder, mean, diff=None, verdict=''):
        return {'task': 'sex', 'metric': 'auroc_within', 'headline': 'True', 'encoder': encoder, 'fraction': '1.0',
                'mean': mean, 'ci_lo': '0.5', 'ci_hi': '0.9', 'n_test': '40', 'diff_vs_random': diff or 'nan',
                'diff_lo': '0.01', 'diff_hi': '0.2', 'verdict_vs_random': verdict}
    rows = [row('random', '0.6'), row('enc', '0.7', '0.1', 'better'), dict(row('enc', '0.1', '-0.5'), fraction='0.1')]
    block = release_weights.suite_table(rows, 'enc', 'r.csv')
    assert '| sex | auroc_within | 0.700 [0.500, 0.900] | 0.600 | +0.100 [+0.010, +0.200] | better | 40 |' in block
    assert '| 0.100 [' not in block and '-0.500' not in block  # the 10% row is not the table's
    body = 'intro\n## Limitations\n- none\n'
    once = release_weights.put_suite_table(body, block)
    assert once.index(release_weights.SUITE_START) < once.index('## Limitations')
    again = release_weights.put_suite_table(once, block.replace('better', 'worse'))
    assert again.count(release_weights.SUITE_START) == 1 and '| worse |' in again
    with pytest.raises(ValueError, match="no 100%-label headline rows for encoder 'other'"):
        release_weights.suite_table(rows, 'other', 'r.csv')
