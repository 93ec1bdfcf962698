"""The torch training helper: memorisation, honest bookkeeping, seeding, devices and input checks."""

import numpy as np
import pytest
import torch
from sklearn.metrics import zero_one_loss

from poisoning.data import load_digits
from poisoning.random_data import random_labels
from poisoning.training import TrainingHistory, error_rate, make_mlp, predict, train

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def few_threads():
    # tiny matrices: extra threads only add overhead on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X[:300].astype(np.float32), y[:300], X[300:800].astype(np.float32), y[300:800]


def independent_error(model, X, y):
    """The 0/1 error computed without the library: a CPU forward pass and scikit-learn."""
    model = model.to("cpu").eval()
    with torch.no_grad():
        pred = model(torch.as_tensor(X, dtype=torch.float32)).argmax(dim=1).numpy()
    return zero_one_loss(y, pred, normalize=False) / len(y)  # a count of mistakes over n


def test_make_mlp_architecture_and_seeding():
    model = make_mlp(64, 10, hidden=(32, 16), activation="tanh", random_state=0)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert model(torch.zeros(5, 64)).shape == (5, 10)
    same = make_mlp(64, 10, hidden=(32, 16), activation="tanh", random_state=0)
    other = make_mlp(64, 10, hidden=(32, 16), activation="tanh", random_state=1)
    for a, b, c in zip(model.parameters(), same.parameters(), other.parameters()):
        assert torch.equal(a, b) and not torch.equal(a, c)
    assert [type(m).__name__ for m in make_mlp(4, 3, hidden=())] == ["Linear"]


def test_make_mlp_leaves_the_global_random_state_alone():
    state = torch.get_rng_state()
    make_mlp(10, 2, random_state=3)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(n_inputs=0, n_classes=2), ValueError, "positive integers, got n_inputs=0"),
    (dict(n_inputs=4, n_classes=2, hidden=(8, -1)), ValueError, r"positive integers, got hidden=\(8, -1\)"),
    (dict(n_inputs=4, n_classes=2.5), TypeError, "positive integers, got n_classes=2.5"),
    (dict(n_inputs="4", n_classes=2), TypeError, "positive integers, got n_inputs='4'"),
    (dict(n_inputs=4, n_classes=2, hidden=64), TypeError, "hidden must be a sequence of layer sizes"),
    (dict(n_inputs=4, n_classes=2, activation="swish"), ValueError, "unknown activation"),
    (dict(n_inputs=4, n_classes=2, random_state=-1), ValueError, "random_state must be None, a non-negative"),
    (dict(n_inputs=4, n_classes=2, random_state=1.5), TypeError, "random_state must be None, a non-negative"),
    (dict(n_inputs=4, n_classes=2, random_state="0"), TypeError, "random_state"),
])
def test_make_mlp_refuses_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_mlp(**kwargs)


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_make_mlp_takes_every_kind_of_random_state():
    """An integer is the torch seed; a RandomState or a Generator gives the seed of its first draw from
    [0, 2**32), so a given state always gives the same network; None gives a fresh one."""
    by_int = make_mlp(8, 3, hidden=(5,), random_state=11)
    assert _same_weights(by_int, make_mlp(8, 3, hidden=(5,), random_state=np.int64(11)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        reference = torch.nn.Linear(8, 5)  # torch's own initialisation from the same seed
    assert torch.equal(by_int[0].weight, reference.weight)

    seed = int(np.random.RandomState(3).randint(0, 2**32, dtype=np.uint64))
    by_state = make_mlp(8, 3, hidden=(5,), random_state=np.random.RandomState(3))
    assert _same_weights(by_state, make_mlp(8, 3, hidden=(5,), random_state=seed))
    seed = int(np.random.default_rng(3).integers(0, 2**32, dtype=np.uint64))
    by_generator = make_mlp(8, 3, hidden=(5,), random_state=np.random.default_rng(3))
    assert _same_weights(by_generator, make_mlp(8, 3, hidden=(5,), random_state=seed))
    assert _same_weights(by_generator, make_mlp(8, 3, hidden=(5,), random_state=np.random.default_rng(3)))
    # the state advances: a second network from the same object is another one
    generator = np.random.default_rng(3)
    first, second = (make_mlp(8, 3, hidden=(5,), random_state=generator) for _ in range(2))
    assert _same_weights(first, by_generator) and not _same_weights(first, second)
    # None: a working network from a fresh seed
    fresh = make_mlp(8, 3, hidden=(5,), random_state=None)
    assert fresh(torch.zeros(2, 8)).shape == (2, 3)
    assert not _same_weights(fresh, make_mlp(8, 3, hidden=(5,), random_state=None))


def test_an_mlp_memorises_random_labels(digits):
    X, y, _, _ = digits
    X, y = X[:100], random_labels(y[:100], random_state=0)
    model = make_mlp(64, 10, hidden=(128,), random_state=0)
    history = train(model, X, y, epochs=500, batch_size=20, lr=0.05, stop_at_zero_error=True, device="cpu",
                    progress=False)
    assert history.fitted and history.train_error[-1] == 0.0
    assert history.epochs == history.epochs_to_fit < 500  # stopped as soon as the error hit zero
    assert history.steps_to_fit == history.steps == history.epochs * history.steps_per_epoch
    assert independent_error(model, X, y) == 0.0
    # the loss goes down: the last epoch's average is a fraction of the first's
    loss = np.array(history.loss).reshape(history.epochs, history.steps_per_epoch)
    assert loss[-1].mean() < 0.5 * loss[0].mean()
    assert np.all(np.isfinite(loss))


def test_reported_errors_equal_an_independent_computation(digits):
    X, y, X_test, y_test = digits
    model = make_mlp(64, 10, hidden=(16,), random_state=1)
    # a short, slow run, so that the errors are far from zero and from each other
    history = train(model, X, y, X_test, y_test, epochs=3, batch_size=64, lr=0.01, momentum=0.0,
                    device="cpu", progress=False)
    assert 0.0 < history.train_error[-1] < 0.9
    assert history.train_error[-1] == independent_error(model, X, y)
    assert history.test_error[-1] == independent_error(model, X_test, y_test)
    assert error_rate(model, X_test, y_test, device="cpu") == history.test_error[-1]
    with pytest.raises(ValueError, match="shape"):
        error_rate(model, X_test, y_test[:-1], device="cpu")
    np.testing.assert_array_equal(predict(model, X_test, device="cpu"),
                                  model(torch.as_tensor(X_test)).argmax(1).numpy())


def test_history_bookkeeping(digits):
    X, y, X_test, y_test = digits
    history = train(make_mlp(64, 10, hidden=(8,), random_state=0), X[:250], y[:250], epochs=4, batch_size=32,
                    device="cpu", progress=False)
    assert isinstance(history, TrainingHistory)
    assert history.steps_per_epoch == 8  # ceil(250 / 32): the last batch is short, not dropped
    assert history.steps == len(history.loss) == 32 and history.epochs == 4
    assert history.test_error == [] and len(history.train_error) == 4
    assert all(isinstance(v, float) for v in history.loss + history.train_error)


def test_same_seed_same_run_other_seed_other_run(digits):
    X, y, X_test, y_test = digits

    def run(seed):
        model = make_mlp(64, 10, hidden=(16,), random_state=0)
        return model, train(model, X, y, X_test, y_test, epochs=2, random_state=seed, device="cpu",
                            progress=False)

    (m1, h1), (m2, h2), (_, h3) = run(0), run(0), run(1)
    assert h1.loss == h2.loss and h1.test_error == h2.test_error
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert h1.loss != h3.loss  # the seed sets the mini-batch order


def test_training_leaves_the_global_random_state_alone(digits):
    X, y, _, _ = digits
    state = torch.get_rng_state()
    train(make_mlp(64, 10, hidden=(8,)), X, y, epochs=1, device="cpu", progress=False)
    assert torch.equal(state, torch.get_rng_state())


def test_other_optimisers(digits):
    X, y, _, _ = digits
    adam = train(make_mlp(64, 10, hidden=(32,), random_state=0), X, y, epochs=5, optimizer="adam", lr=1e-2,
                 device="cpu", progress=False)
    assert adam.train_error[-1] < 0.2
    custom = train(make_mlp(64, 10, hidden=(32,), random_state=0), X, y, epochs=2, device="cpu", progress=False,
                   optimizer=lambda params: torch.optim.RMSprop(params, lr=1e-3))
    assert custom.steps == 2 * custom.steps_per_epoch


def test_device_default_follows_get_device(digits, monkeypatch):
    X, y, _, _ = digits
    monkeypatch.setenv("POISONING_DEVICE", "cpu")
    model = make_mlp(64, 10, hidden=(8,))
    train(model, X, y, epochs=1, progress=False)
    assert all(p.device.type == "cpu" for p in model.parameters())
    monkeypatch.delenv("POISONING_DEVICE")
    train(model, X, y, epochs=1, progress=False)
    expected = "cuda" if CUDA else "cpu"
    assert all(p.device.type == expected for p in model.parameters())  # the model is left on the device
    assert error_rate(model, X, y) == independent_error(model, X, y)


@pytest.mark.skipif(not CUDA, reason="needs a GPU")
def test_gpu_run_matches_the_bookkeeping_of_a_cpu_run(digits):
    X, y, X_test, y_test = digits
    model = make_mlp(64, 10, hidden=(32,), random_state=0)
    history = train(model, X, y, X_test, y_test, epochs=3, device="cuda", progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert history.test_error[-1] == independent_error(model, X_test, y_test)


def test_bad_device_is_refused(digits):
    X, y, _, _ = digits
    with pytest.raises(ValueError, match="unknown device"):
        train(make_mlp(64, 10), X, y, epochs=1, device="not-a-device", progress=False)


@pytest.mark.parametrize("change, message", [
    (dict(y=np.zeros(300)), "integer class labels"),
    (dict(y=np.full(300, 10)), r"labels in 0\.\.9"),
    (dict(y=np.zeros(299, dtype=int)), "shape"),
    (dict(X=np.zeros(300)), r"shape \(n, d\)"),
    (dict(X_test=np.zeros((5, 64))), "both X_test and y_test"),
    (dict(X_test=np.zeros((5, 63)), y_test=np.zeros(5, dtype=int)), "features"),
    (dict(epochs=0), "epochs"),
    (dict(batch_size=0), "batch_size"),
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(random_state=-3), "random_state"),
])
def test_train_refuses_bad_input(digits, change, message):
    X, y, _, _ = digits
    kwargs = {"X": X, "y": y, "epochs": 1, "device": "cpu", "progress": False, **change}
    with pytest.raises(ValueError, match=message):
        train(make_mlp(64, 10), **kwargs)


@pytest.mark.parametrize("change, message", [
    (dict(epochs=2.0), "epochs must be a positive integer, got 2.0"),
    (dict(batch_size="32"), "batch_size must be a positive integer, got '32'"),
    (dict(random_state=1.5), "random_state must be None, a non-negative integer"),
    (dict(random_state="seed"), "random_state"),
])
def test_train_refuses_bad_types_with_type_errors(digits, change, message):
    X, y, _, _ = digits
    kwargs = {"X": X, "y": y, "epochs": 1, "device": "cpu", "progress": False, **change}
    with pytest.raises(TypeError, match=message):
        train(make_mlp(64, 10), **kwargs)


def test_train_takes_every_kind_of_random_state(digits):
    """Integers, RandomStates and Generators give deterministic runs (a RandomState or a Generator is the seed of
    its first draw from [0, 2**32)); None gives a working run from a fresh seed."""
    X, y, _, _ = digits
    X, y = X[:96], y[:96]

    def run(random_state):
        model = make_mlp(64, 10, hidden=(8,), random_state=0)
        history = train(model, X, y, epochs=2, batch_size=16, random_state=random_state, device="cpu",
                        progress=False)
        return history.loss

    by_int = run(5)
    assert run(np.int64(5)) == by_int
    seed = int(np.random.RandomState(5).randint(0, 2**32, dtype=np.uint64))
    assert run(np.random.RandomState(5)) == run(np.random.RandomState(5)) == run(seed)
    seed = int(np.random.default_rng(5).integers(0, 2**32, dtype=np.uint64))
    by_generator = run(np.random.default_rng(5))
    assert by_generator == run(np.random.default_rng(5)) == run(seed)
    assert by_generator != by_int  # the generator's draw, not 5, seeds the run
    generator = np.random.default_rng(5)
    assert run(generator) == by_generator and run(generator) != by_generator  # the generator advances
    fresh = run(None)
    assert len(fresh) == 12 and np.all(np.isfinite(fresh))


def test_progress_bar_shows_the_description(digits, capsys):
    X, y, _, _ = digits
    train(make_mlp(64, 10, hidden=(8,)), X, y, epochs=2, device="cpu", progress=True, desc="random labels")
    err = capsys.readouterr().err
    assert "random labels" in err and "train err" in err


def test_make_cnn_layers_shapes_and_seeding():
    import torch

    from poisoning.training import cnn_layer_index, make_cnn

    model = make_cnn(n_classes=3, image_shape=(8, 12), channels=(2, 4), n_features=5, random_state=0)
    X = torch.rand(7, 8 * 12)
    assert model(X).shape == (7, 3)
    features = model[:cnn_layer_index(model, "relu_features") + 1]
    assert features(X).shape == (7, 5) and torch.all(features(X) >= 0)
    # the second convolution sees the image after one 2 x 2 pooling
    assert model[:cnn_layer_index(model, "relu2") + 1](X).shape == (7, 4, 4, 6)
    # the head is a linear layer on the features
    torch.testing.assert_close(model.head(features(X)), model(X))
    same = make_cnn(n_classes=3, image_shape=(8, 12), channels=(2, 4), n_features=5, random_state=0)
    other = make_cnn(n_classes=3, image_shape=(8, 12), channels=(2, 4), n_features=5, random_state=1)
    assert torch.equal(same.conv1.weight, model.conv1.weight)
    assert not torch.equal(other.conv1.weight, model.conv1.weight)
    with pytest.raises(ValueError, match="multiples of 4"):
        make_cnn(image_shape=(28, 30))
    with pytest.raises(ValueError, match="positive integers, got n_features=0"):
        make_cnn(n_features=0)
    with pytest.raises(TypeError, match=r"positive integers, got channels=\(8, 16.0\)"):
        make_cnn(channels=(8, 16.0))
    same_generator = make_cnn(n_classes=3, image_shape=(8, 12), channels=(2, 4), n_features=5,
                              random_state=np.random.default_rng(2))
    assert torch.equal(same_generator.conv1.weight,
                       make_cnn(n_classes=3, image_shape=(8, 12), channels=(2, 4), n_features=5,
                                random_state=np.random.default_rng(2)).conv1.weight)
    with pytest.raises(ValueError, match="no layer 'conv3'"):
        cnn_layer_index(model, "conv3")


def test_a_cnn_trains_with_the_training_loop():
    from poisoning.data import load_digits
    from poisoning.training import make_cnn

    X, y = load_digits([0, 1])
    model = make_cnn(n_classes=2, image_shape=(8, 8), channels=(4, 8), n_features=16, random_state=0)
    history = train(model, X, y, epochs=3, batch_size=32, optimizer="adam", lr=1e-2, progress=False)
    assert history.train_error[-1] < 0.05  # 0 vs 1 is easy: the CNN learns it in three epochs
    assert error_rate(model, X, y) == history.train_error[-1]
