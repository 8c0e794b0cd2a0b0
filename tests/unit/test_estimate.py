"""Estimates against hand-computed and published numbers (arithmetic in the comments)."""

import math

import pytest

from llmc.compiler import catalog
from llmc.compiler import estimate as E

GB = 1e9


# --- parameter counts ----------------------------------------------------------------


def test_tiny_encoder_decoder_by_hand():
    # d = 2, d_ff = 4, vocab 3, max_len 5, 1 layer per stack.
    # attention = 4 (d^2 + d) = 4 (4 + 2) = 24; FFN = 2*4 + 4 + 4*2 + 2 = 22; LayerNorm = 2d = 4
    # encoder layer = 24 + 22 + 2*4 = 54; decoder layer = 2*24 + 22 + 3*4 = 82
    # token embedding 3*2 = 6 (shared, tied); positional 2 stacks * 5*2 = 20; final LNs 2*4 = 8
    # total = 6 + 20 + 54 + 82 + 8 = 170
    pc = E.transformer_params("encoder-decoder", 1, 2, 1, 4, 3, 5)
    assert (pc.encoder_layer, pc.decoder_layer) == (54, 82)
    assert (pc.token_embedding, pc.positional, pc.final_norms, pc.head) == (6, 20, 8, 0)
    assert pc.total == 170
    assert pc.transformer_layers == 2 and pc.cross_attention_layers == 1
    assert "170 parameters" in pc.explain()


def test_tiny_decoder_and_encoder_by_hand():
    # decoder-only: no cross-attention, so a layer is 54 as above; one positional table 10,
    # one final LN 4, tied output adds nothing: 6 + 10 + 54 + 4 = 74
    dec = E.transformer_params("decoder", 1, 2, 1, 4, 3, 5)
    assert dec.total == 74 and dec.decoder_layer == 54 and dec.cross_attention_layers == 0
    # encoder classifier with 3 classes: head 2*3 + 3 = 9 -> 6 + 10 + 54 + 4 + 9 = 83
    enc = E.transformer_params("encoder", 1, 2, 1, 4, 3, 5, classes=3)
    assert enc.total == 83 and enc.head == 9


def test_d_ff_defaults_to_four_d_model():
    assert E.transformer_params("decoder", 2, 8, 2, None, 10, 4) == E.transformer_params("decoder", 2, 8, 2, 32, 10, 4)


def test_bad_kind_or_missing_classes():
    with pytest.raises(ValueError):
        E.transformer_params("seq2seq", 1, 2, 1, 4, 3, 5)
    with pytest.raises(ValueError):
        E.transformer_params("encoder", 1, 2, 1, 4, 3, 5)


def test_vaswani_base_is_about_65m():
    # Transformer base (Vaswani et al. 2017, Table 3): 6+6 layers, d 512, d_ff 2048, a shared
    # 37000-token vocabulary, 65M parameters; it used sinusoidal positions, so leave ours out.
    # embedding 37000*512 = 18,944,000; encoder layer 4(512^2+512) + (2*512*2048+2048+512) + 2*1024
    # = 1,050,624 + 2,099,712 + 2,048 = 3,152,384; decoder layer 2*1,050,624 + 2,099,712 + 3,072
    # = 4,204,032; 6*(3,152,384 + 4,204,032) + 18,944,000 + 2*1,024 = 63,084,544
    pc = E.transformer_params("encoder-decoder", 6, 512, 8, 2048, 37000, 512)
    without_positions = pc.total - pc.positional
    assert without_positions == 63_084_544
    assert abs(without_positions - 65e6) / 65e6 < 0.04


def test_mlp_params_by_hand():
    # 10 -> 5 -> 3: (10*5 + 5) + (5*3 + 3) = 55 + 18 = 73
    m = E.mlp_params(10, [5], 3)
    assert m.per_layer == (55, 18) and m.total == 73
    assert E.mlp_params(4, [], 2).total == 4 * 2 + 2


# --- training memory -----------------------------------------------------------------


def test_bytes_per_parameter():
    # ZeRO §3.1: mixed-precision Adam = 2 (fp16 weights) + 2 (fp16 grads) + 12 (fp32 master, m, v)
    assert E.state_bytes_per_param("bf16", "adam") == (2, 2, 12)
    assert sum(E.state_bytes_per_param("fp16", "adamw")) == 16
    assert E.state_bytes_per_param("fp32", "adamw") == (4, 4, 8)
    assert E.state_bytes_per_param("fp32", "sgd", 0.9) == (4, 4, 4)
    assert E.state_bytes_per_param("fp16", "sgd", 0.9) == (2, 2, 8)
    assert E.state_bytes_per_param("bf16", "sgd", 0.0) == (2, 2, 4)
    assert E.state_bytes_per_param("fp32", "sgd", 0.0) == (4, 4, 0)
    with pytest.raises(ValueError):
        E.state_bytes_per_param("fp8", "adam")


def test_mixed_precision_adam_is_16_bytes_per_param():
    m = E.training_memory(1e9, 0, 1024, 16, 512, 1, "bf16", "adamw", 0.0, 1, 1, False, 80 * GB)
    assert m.weights + m.gradients + m.optimizer == pytest.approx(16e9)
    assert m.activations == pytest.approx(5 * 512 * 1 * 1024)  # layers = 0: only embedding/output extras


def test_korthikanti_formula_worked_case():
    # s = 2048, b = 1, h = 4096, a = 32: sbh = 8,388,608; 5as/h = 5*32*2048/4096 = 80
    # eq. 1: sbh (34 + 80) = 114 sbh, plus the zoo's dropout on the FFN hidden layer
    # (d_ff = 4h one-byte mask elements per token): 118 * 8,388,608 = 989,855,744 bytes per layer
    assert E.activation_bytes_per_layer(2048, 1, 4096, 32) == 989_855_744
    # eq. 2 with t = 8: sbh (10 + 24/8 + 80/8) = 23 sbh, + 4/8 sbh = 23.5 sbh = 197,132,288
    assert E.activation_bytes_per_layer(2048, 1, 4096, 32, 8) == 197_132_288
    # a cross-attention decoder layer at t = 1 adds 13 sbh + 5 a s^2 b = sbh (13 + 80)
    assert E.activation_bytes_per_layer(2048, 1, 4096, 32, cross_attention=True) == (118 + 93) * 8_388_608
    # Term by term (e bytes per activation, m per mask element): fp32 on a CPU keeps
    # 4-byte masks, 24 + 64 = 88 sbh + (2e + m) 80/5 = 12 * 16 sbh of scores
    assert E.activation_bytes_per_layer(2048, 1, 4096, 32, act_bytes=4, mask_bytes=4) == (88 + 192) * 8_388_608
    # A fused attention kernel keeps only its fp32 log-sum-exp (4 a / h sbh) instead of the scores
    fused = E.activation_bytes_per_layer(2048, 1, 4096, 32, fused_attention=True)
    assert fused == (38 + 4 * 32 / 4096) * 8_388_608


def test_activation_element_sizes():
    assert E.activation_element_bytes("bf16") == (2, 1)  # Korthikanti: 16-bit activations, bool masks
    assert E.activation_element_bytes("fp32") == (4, 1)  # CUDA's dropout keeps a bool mask in fp32 too
    assert E.activation_element_bytes("bf16", cpu=True) == (4, 4)  # a CPU trains fp32; its masks are fp32
    assert E.activation_element_bytes("fp16", dropout=0.0) == (2, 0)  # no dropout, no masks


def test_training_memory_by_hand():
    # 1e9 params, bf16 AdamW, 2 layers, d 1024, 16 heads, s 512, b 4, no parallelism, vocab 0:
    # weights 2e9, gradients 2e9, optimizer 12e9
    # sbh = 512*4*1024 = 2,097,152; per layer sbh (38 + 5*16*512/1024 = 40) = 78 sbh = 163,577,856
    # 2 layers = 327,155,712; extras: embedding dropout + final LN + output input = 5 sbh = 10,485,760
    # activations 337,641,472; total 16,337,641,472
    m = E.training_memory(1e9, 2, 1024, 16, 512, 4, "bf16", "adamw", 0.0, 1, 1, False, 80 * GB)
    assert (m.weights, m.gradients, m.optimizer) == (2e9, 2e9, 12e9)
    assert m.activations == 337_641_472
    assert m.total == 16_337_641_472
    assert m.fits and m.headroom == pytest.approx(1 - 16_337_641_472 / 80e9)
    assert (
        m.breakdown()
        == "weights 2.0 GB + gradients 2.0 GB + optimizer 12.0 GB + activations 0.3 GB = 16.3 GB of 80.0 GB"
    )
    # Full recomputation keeps each layer's 2 sbh input + the rest of one layer's working
    # set while it is recomputed (78 - 2 sbh) + 5 sbh
    ck = E.training_memory(1e9, 2, 1024, 16, 512, 4, "bf16", "adamw", 0.0, 1, 1, True, 80 * GB)
    assert ck.activations == (2 * 2 + 76 + 5) * 2_097_152
    # fp32 training on a GPU: 4-byte activations, 1-byte masks: (4e + 2m) + 4e + (2e + m) 4
    # = 18 + 16 + 36 = 70 sbh + (2e + m) 8 = 72 sbh of scores per layer, extras m + 2e = 9 sbh;
    # Adam is 4 + 4 + 8
    fp = E.training_memory(1e9, 2, 1024, 16, 512, 4, "fp32", "adam", 0.0, 1, 1, False, 80 * GB)
    assert fp.activations == (2 * (70 + 72) + 9) * 2_097_152
    assert (fp.weights, fp.gradients, fp.optimizer) == (4e9, 4e9, 8e9)
    # On a CPU the masks are fp32 as well (24 + 16 + 48 = 88 sbh + 12 * 8 per layer, 12 extra) and a
    # bf16 spec trains in fp32 (the runtime's choice without a GPU), so it is estimated so
    cpu = E.training_memory(1e9, 2, 1024, 16, 512, 4, "bf16", "adam", 0.0, 1, 1, False, 80 * GB, cpu=True)
    assert cpu.activations == (2 * (88 + 96) + 12) * 2_097_152
    assert cpu.precision == "fp32" and (cpu.weights, cpu.gradients, cpu.optimizer) == (4e9, 4e9, 8e9)


def test_model_parallelism_splits_states_and_logits_are_fp32():
    # tensor 2 x pipeline 2: weights 8e9 * 2 B / 4 = 4e9
    m = E.training_memory(8e9, 4, 1024, 16, 128, 1, "fp16", "adam", 0.0, 2, 2, False, 80 * GB)
    assert m.shards == 4 and m.weights == 4e9 and m.optimizer == 24e9
    # logits for the loss: 4 s b v bytes (fp32) on top of 5 sbh, with pipeline = 1
    a = E.training_memory(1e6, 1, 64, 2, 10, 3, "bf16", "adam", 0.0, 1, 1, False, 80 * GB, vocab=0)
    b = E.training_memory(1e6, 1, 64, 2, 10, 3, "bf16", "adam", 0.0, 1, 1, False, 80 * GB, vocab=1000)
    assert b.activations - a.activations == 4 * 10 * 3 * 1000


def test_pipeline_does_not_shrink_activations():
    # 1F1B: the first stage holds `pipeline` micro-batches of layers/pipeline layers = all layers' worth.
    one = E.training_memory(1e9, 8, 1024, 16, 512, 1, "bf16", "adam", 0.0, 1, 1, False, 80 * GB)
    four = E.training_memory(1e9, 8, 1024, 16, 512, 1, "bf16", "adam", 0.0, 1, 4, False, 80 * GB)
    assert four.activation_layers == one.activation_layers == 8
    assert four.activations - four.activation_extra == one.activations - one.activation_extra


def test_13b_decoder_data_parallel_does_not_fit_on_a100_80gb():
    # 13B-class decoder: layers 40, d 5120, heads 40, vocab 32000: ~12.8B params
    # x 16 B (mixed-precision Adam, no sharding under data parallelism) = ~204 GB > 80 GB
    pc = E.transformer_params("decoder", 40, 5120, 40, None, 32000, 2048)
    assert 12.5e9 < pc.total < 13.2e9
    dev = catalog.get("A100-80GB")
    m = E.training_memory(
        pc.total,
        pc.transformer_layers,
        5120,
        40,
        2048,
        1,
        "bf16",
        "adamw",
        0.0,
        1,
        1,
        False,
        dev.memory_bytes,
        vocab=32000,
    )
    assert m.weights + m.gradients + m.optimizer == pytest.approx(16 * pc.total)
    assert not m.fits and m.headroom < 0
    assert m.breakdown().endswith("of 80.0 GB")


def test_7b_decoder_tensor_8_with_checkpointing_fits_on_h100():
    # ~6.6B params / 8 shards x 16 B = ~13.2 GB; activations with recomputation:
    # 32 layers x 2 sbh (s 2048, b 1, h 4096: 16.8 MB) + one layer 23 sbh + 5 sbh + 4 s v (262 MB) ~ 1 GB
    pc = E.transformer_params("decoder", 32, 4096, 32, None, 32000, 2048)
    dev = catalog.get("H100-80GB")
    m = E.training_memory(
        pc.total,
        pc.transformer_layers,
        4096,
        32,
        2048,
        1,
        "bf16",
        "adamw",
        0.0,
        8,
        1,
        True,
        dev.memory_bytes,
        vocab=32000,
    )
    assert m.fits
    assert 12 * GB < m.total < 20 * GB


# --- latency -------------------------------------------------------------------------


def _t4_student(out_len, batch=1, precision="int8"):
    t4 = catalog.get("T4")
    return E.request_latency(
        "encoder-decoder",
        3,
        256,
        1024,
        32000,
        256,
        out_len,
        precision,
        t4.peak_ops(precision),
        t4.bandwidth_bytes_per_s,
        batch=batch,
    )


def test_translation_latency_grows_with_out_len():
    lats = [_t4_student(n).total_s for n in (1, 16, 64, 256)]
    assert lats == sorted(lats) and lats[0] < lats[-1]
    assert _t4_student(256).steps == 256


def test_encoder_has_no_decode_steps():
    t4 = catalog.get("T4")
    lat = E.request_latency(
        "encoder", 6, 512, None, 32000, 128, 999, "fp16", t4.fp16_flops, t4.bandwidth_bytes_per_s, classes=4
    )
    assert lat.steps == 0 and lat.decode_s == 0
    assert lat.total_s == pytest.approx(lat.prefill_s + E.REQUEST_OVERHEAD_S)


def test_memory_bound_decode_step_by_hand():
    # A 7B-class decoder at batch 1 in fp16 on an A100-80GB is bandwidth-bound: a step reads
    # every weight (2 bytes each) + the KV cache at 0.7 x 2,039 GB/s, plus the host round trip.
    dev = catalog.get("A100-80GB")
    lat = E.request_latency("decoder", 32, 4096, None, 32000, 1, 1, "fp16", dev.fp16_flops, dev.bandwidth_bytes_per_s)
    assert lat.step_bound == "memory"
    layer = E.encoder_layer_params(4096, 4 * 4096)
    weights = 32 * layer + 2 * 4096 + 32000 * 4096
    ctx = 1 + (1 + 1) / 2  # prompt + mean generated context
    kv = 2 * 32 * ctx * 4096 * 2
    assert lat.step_bytes == pytest.approx(2 * weights + kv)
    assert lat.per_step_s == pytest.approx((2 * weights + kv) / (0.7 * 2039e9) + E.STEP_SYNC_S)


def test_int8_is_faster_than_fp32_and_batching_amortises_weights():
    assert _t4_student(64, precision="int8").total_s < _t4_student(64, precision="fp32").total_s
    one, sixteen = _t4_student(64).total_s, _t4_student(64, batch=16).total_s
    assert one < sixteen < 16 * one


def test_request_lengths_worst_case():
    assert E.request_lengths("encoder-decoder", 256) == (256, 256)
    assert E.request_lengths("encoder", 128) == (128, 0)
    assert E.request_lengths("decoder", 512) == (1, 511)


def test_bf16_on_a_device_without_it_is_infinitely_slow():
    t4 = catalog.get("T4")
    lat = E.request_latency(
        "encoder", 2, 64, None, 100, 16, 0, "bf16", t4.peak_ops("bf16"), t4.bandwidth_bytes_per_s, classes=2
    )
    assert lat.total_s == math.inf


# --- queueing ------------------------------------------------------------------------


def test_erlang_c_textbook_values():
    # c = 2, a = 1: B(1) = 1/2, B(2) = (1/2) / (2 + 1/2) = 1/5, C = 2(1/5) / (2 - 1(4/5)) = 1/3
    assert E.erlang_c(2, 1) == pytest.approx(1 / 3)
    # c = 3, a = 2: C = 4/9
    assert E.erlang_c(3, 2) == pytest.approx(4 / 9)
    # M/M/1: C = rho
    assert E.erlang_c(1, 0.5) == pytest.approx(0.5)
    assert E.erlang_c(2, 2) == 1.0 and E.erlang_c(2, 3) == 1.0
    assert E.erlang_c(5, 0) == 0.0


def test_erlang_c_approximation_agrees_with_exact(monkeypatch):
    exact = E.erlang_c(2000, 1950)
    monkeypatch.setattr(E, "EXACT_ERLANG_LOAD", 10)
    approx = E.erlang_c(2000, 1950)
    assert approx == pytest.approx(exact, rel=0.03)


def test_replicas_by_hand_without_batching():
    # max batch 1, timeout 0, S = 1 s: mu = 1/s; lambda = 1/s, so a = 1 erlang.
    # c=2: C = 1/3, c mu - lambda = 1: p99 wait = ln((1/3)/0.01) = 3.507 s -> 4.507 s
    # c=3: C = 1/11 = 0.0909, rate 2: ln(9.09)/2 = 1.104 -> 2.104 s
    # c=4: C = 0.0204, rate 3: ln(2.04)/3 = 0.238 -> 1.238 s
    # c=5: C = 0.0038 < 0.01: no p99 wait -> 1.0 s
    for target, c in ((4.6, 2), (2.2, 3), (1.3, 4), (1.0, 5)):
        s = E.replicas_needed(1.0, 1.0, target, 1, 0.0)
        assert s.feasible and s.replicas == c, (target, s)
    s = E.replicas_needed(1.0, 1.0, 4.6, 1, 0.0)
    assert s.erlang_c == pytest.approx(1 / 3)
    assert s.predicted_s == pytest.approx(math.log(100 / 3) + 1)
    assert s.utilisation == pytest.approx(0.5)
    # Little's law: mean response = C/(c mu - lambda) + S = 1/3 + 1, L = lambda W = 4/3
    assert s.in_system == pytest.approx(4 / 3)


def test_replicas_grow_with_throughput():
    previous: float = 0
    for rps in (1, 10, 50, 100, 200, 400, 800, 1600, 3200, 1e4, 1e5):
        s = E.replicas_needed(rps, 0.024, 0.080, 16, 0.005)
        assert s.feasible and s.replicas >= previous
        previous = s.replicas
    assert previous > 100


def test_infeasible_when_one_request_is_too_slow():
    s = E.replicas_needed(10, 0.090, 0.080, 8, 0.002)
    assert not s.feasible and s.replicas == math.inf
    assert "infeasible" in s.explain()


def test_independent_queues_need_at_least_as_many_replicas():
    shared = E.replicas_needed(400, 0.024, 0.080, 16, 0.005)
    independent = E.replicas_needed(400, 0.024, 0.080, 16, 0.005, shared_queue=False)
    assert independent.replicas >= shared.replicas


# --- the translator example (examples/translator.llm) ----------------------------------


def _translator_serve(dev_name, layers, d_model, d_ff, vocab, max_len, rps, p99, max_batch, timeout):
    dev = catalog.get(dev_name)
    s_len, o_len = E.request_lengths("encoder-decoder", max_len)

    def latency(batch):
        return E.request_latency(
            "encoder-decoder",
            layers,
            d_model,
            d_ff,
            vocab,
            s_len,
            o_len,
            "int8",
            dev.peak_ops("int8"),
            dev.bandwidth_bytes_per_s,
            batch=batch,
        )

    one = latency(1)
    sizing = E.replicas_needed(
        rps, one.total_s, p99, max_batch, timeout, batch_service_time=lambda b: latency(b).total_s
    )
    return one, sizing


def test_translator_serve_on_t4_is_feasible():
    # distilled student (3 layers, d 256, d_ff 1024, vocab 32000, max_len 256), INT8 on a T4,
    # 400 rps at p99 80 ms, batches of up to 16 with a 5 ms window, replicas.max 16
    one, sizing = _translator_serve("T4", 3, 256, 1024, 32000, 256, 400, 0.080, 16, 0.005)
    assert one.total_s < 0.080
    assert sizing.feasible and sizing.replicas <= 16


def test_translator_local_profile_serve_on_cpu_is_feasible():
    one, sizing = _translator_serve("cpu", 1, 64, 128, 260, 64, 20, 0.200, 16, 0.005)
    assert one.total_s < 0.200
    assert sizing.feasible and sizing.replicas <= 16


def test_translator_training_layout_fits_on_a100_80gb():
    pc = E.transformer_params("encoder-decoder", 6, 512, 8, 2048, 32000, 256)
    dev = catalog.get("A100-80GB")
    m = E.training_memory(
        pc.total,
        pc.transformer_layers,
        512,
        8,
        256,
        32,
        "bf16",
        "adamw",
        0.0,
        2,
        1,
        False,
        dev.memory_bytes,
        cross_attention_layers=pc.cross_attention_layers,
        vocab=32000,
        d_ff=2048,
    )
    assert m.fits and m.headroom > 0.5


# --- totality ------------------------------------------------------------------------

HUGE = (1e30, 10**40, 1e300, math.inf)


@pytest.mark.parametrize("big", HUGE)
def test_no_function_raises_on_extreme_inputs(big):
    pc = E.transformer_params("encoder-decoder", big, big, 8, None, big, big)
    pc.explain()
    m = E.training_memory(
        1e30,
        1e9,
        1e9,
        1e9,
        1e9,
        1e9,
        "fp32",
        "sgd",
        0.9,
        big,
        big,
        True,
        80 * GB,
        cross_attention_layers=big,
        vocab=big,
    )
    assert not m.fits
    m.breakdown(), m.explain()
    m = E.training_memory(big, 2, 8, 2, 1e9, 1, "bf16", "adam", 0.0, 1, 1, False, 80 * GB)
    assert not m.fits
    for kind in E.KINDS:
        lat = E.request_latency(kind, big, big, big, big, 1e9, big, "int8", 1e12, 1e11, classes=big, batch=big)
        assert not math.isnan(lat.total_s)
        lat.explain()
    E.mlp_latency(big, [big], big, "fp16", 1e12, 1e11).explain()
    for rps in (1e12, big):
        s = E.replicas_needed(rps, 1e-3, 0.1, 16, 0.005)
        assert not math.isnan(s.predicted_s)
        s.explain()
        E.replicas_needed(rps, 1e-3, 0.1, big, big)
        E.replicas_needed(rps, big, big, big, 0.0, shared_queue=False)
    assert 0.0 <= E.erlang_c(big, 1e12) <= 1.0
    assert 0.0 <= E.erlang_c(1e12, big) <= 1.0


def test_tiny_positive_inputs():
    s = E.replicas_needed(1e-12, 1e-12, 1e-9, 1, 0.0)
    assert s.feasible and s.replicas == 1
    lat = E.request_latency("decoder", 1, 1, 1, 1, 1, 1, "fp32", 1e-300, 1e-300)
    assert lat.total_s > 0


# --- the planned request (serve.request) ------------------------------------------------------


def test_request_lengths_default_to_the_longest_request_the_model_takes():
    assert E.request_lengths("encoder-decoder", 256) == (256, 256)
    assert E.request_lengths("encoder", 128) == (128, 0)
    assert E.request_lengths("decoder", 2048) == (1, 2047)


def test_stated_request_lengths_replace_the_worst_case():
    assert E.request_lengths("encoder-decoder", 256, 96, 128) == (96, 128)
    assert E.request_lengths("encoder-decoder", 256, None, 12) == (256, 12)
    assert E.request_lengths("encoder", 128, 40, None) == (40, 0)
    # A decoder's stated prompt leaves the rest of the positions to generation.
    assert E.request_lengths("decoder", 2048, 500, None) == (500, 1548)
    assert E.request_lengths("decoder", 2048, None, 256) == (1, 256)


def test_the_planned_request_sets_the_decode_steps_and_the_replicas():
    from support.ranges import check, with_overrides

    stated = check(with_overrides("translator", {}))
    assert stated.ok and stated.facts.request_tokens == (96, 128) and stated.facts.latency.steps == 128
    worst = check(
        with_overrides("translator", {})
        .replace("    input_tokens  = 96\n", "")
        .replace("    output_tokens = 128\n", "")
    )
    assert worst.ok and worst.facts.request_tokens == (256, 256) and worst.facts.latency.steps == 256
    # Half the decode steps: about half the latency, and more capacity per replica.
    assert worst.facts.latency.total_s > 1.8 * stated.facts.latency.total_s
    assert stated.facts.sizing.replica_capacity_rps > 2 * worst.facts.sizing.replica_capacity_rps
    local = check(with_overrides("translator", {}), profile="local")
    assert local.facts.request_tokens == (40, 12) and local.facts.latency.steps == 12


def test_the_cpu_entry_reproduces_the_measurement_it_was_calibrated_on():
    """catalog's `cpu` overheads were fitted to the translator's local student served here
    (its `calibration` text): the model alone took these times for batches of date
    phrases, and a lone request through Triton 5.1 ms without the batching window.
    Changing a figure without measuring again moves the estimate off them."""
    cpu = catalog.get("cpu")
    assert cpu is not None and "Measured" in cpu.calibration
    measured_ms = {1: 1.99, 2: 2.46, 4: 3.42, 8: 5.36, 16: 9.39}

    def estimate(batch: int, with_request_overhead: bool) -> float:
        row = cpu.row_overhead_s + cpu.text_row_overhead_s  # text in and out
        overheads: dict[str, float] = {"request_overhead_s": cpu.request_overhead_s, "row_overhead_s": row}
        lat = E.request_latency(
            "encoder-decoder", 1, 64, 256, 260, 25, 12, "int8", cpu.peak_ops("int8"), cpu.bandwidth_bytes_per_s,
            batch=batch, layer_launch_s=cpu.layer_launch_s, row_launch_s=cpu.row_launch_s,
            step_sync_s=cpu.step_sync_s,
            request_overhead_s=overheads["request_overhead_s"] if with_request_overhead else 0.0,
            row_overhead_s=overheads["row_overhead_s"] if with_request_overhead else 0.0,
        )  # fmt: skip
        return lat.total_s * 1e3

    for batch, ms in measured_ms.items():
        assert estimate(batch, False) == pytest.approx(ms, rel=0.25), batch
    assert estimate(1, True) == pytest.approx(9.4 - 5.0, rel=0.25)
    # Two instances of full batches of 16 at 2.4 ms a request and the model's 9.4 ms: the 640
    # req/s the sweep held (960 did not).
    assert cpu.serving_instances * 16 / estimate(16, True) * 1e3 == pytest.approx(640, rel=0.25)
    # The classifier's MLP (feature vectors, no text): two instances held 1,600 req/s in batches of 64.
    mlp = E.mlp_latency(64, [256, 128], 10, "int8", cpu.peak_ops("int8"), cpu.bandwidth_bytes_per_s, batch=64,
                        request_overhead_s=cpu.request_overhead_s, row_overhead_s=cpu.row_overhead_s,
                        layer_launch_s=cpu.layer_launch_s, row_launch_s=cpu.row_launch_s)  # fmt: skip
    assert cpu.serving_instances * 64 / mlp.total_s == pytest.approx(1600, rel=0.25)


def test_a_replica_of_two_model_instances_serves_twice_and_queues_as_two_servers():
    one = E.replicas_needed(900, 0.01, 0.2, 16, 0.005, instances=1)
    two = E.replicas_needed(900, 0.01, 0.2, 16, 0.005, instances=2)
    assert two.replica_capacity_rps == pytest.approx(2 * one.replica_capacity_rps)
    assert two.replicas == math.ceil(one.replicas / 2)  # the same servers, two to a replica
    # A lone request is no faster: instances serve batches side by side, not a batch sooner.
    idle_one = E.replicas_needed(0, 0.01, 0.2, 16, 0.005, instances=1)
    idle_two = E.replicas_needed(0, 0.01, 0.2, 16, 0.005, instances=2)
    assert idle_two.predicted_s == idle_one.predicted_s
