from keras_ace import ACE
from keras_ace import profiling


def test_forward_flops_of_a_small_net_by_hand():
    model = ACE(
        (16, 16, 1), symmetry="spatial", encoder_units=(32,), decoder_units=8, latent_dim=2,
        classifier_filters=(4,), classifier_units=6, ssn_filters=(2, 3), ssn_kernel_size=3, ssn_units=5,
    )
    model.build()
    parts = profiling.forward_flops(model)
    assert parts["ssn"] == 2 * (16 * 16 * 9 * 1 * 2 + 8 * 8 * 9 * 2 * 3 + 4 * 4 * 3 * 5 + 2 * 5 * 6)
    assert parts["classifier"] == 2 * (16 * 16 * 9 * 4 + 8 * 8 * 4 * 6 + 6 * 10)
    assert parts["encoder"] == 2 * (256 * 32 + 2 * 32 * 20)
    assert parts["decoder"] == 2 * (2 * 8 + 8 * 256)
    assert profiling.training_flops(model) == 3 * sum(parts.values())


def test_conv_decoder_flops():
    model = ACE((16, 16, 3), encoder="conv", conv_filters=(4, 8), decoder_units=10, classifier_filters=(2,), classifier_units=3)
    model.build()
    # latent 1 -> 10 -> 4x4x8 features, transposed convs 8->4 on 4x4 and 4->3 on 8x8 (5x5).
    assert profiling.forward_flops(model)["decoder"] == 2 * (10 + 10 * 128 + 16 * 25 * 8 * 4 + 64 * 25 * 4 * 3)


def test_matmul_peak_counts_two_flops_per_multiply_add(monkeypatch):
    # A clock that advances 0.5 s per reading: every timed product takes exactly 0.5 s.
    ticks = iter(range(1000))
    monkeypatch.setattr(profiling.time, "perf_counter", lambda: 0.5 * next(ticks))
    assert profiling.matmul_peak(size=64, repeats=3) == 2 * 64**3 / 0.5
