"""Model zoo: every model takes a training step, sizes match published counts, configs mirror code.

Full-width models are built on the meta device: parameter shapes are real, storage and
initialisation are skipped, so counting 138M parameters costs nothing.
"""

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from spectral_sweep.errors import UsageError
from spectral_sweep.models import FROM_DATA, MODEL_NAMES, MODELS, build_model, build_target

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"
CLASSES = 7  # not 10/100/1000, so a head hard-wired to a dataset would show


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(name: str, num_classes: int, **options) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(name, num_classes, **options)


def small_options(name: str) -> dict:
    """Width 0.125 where the model supports a width multiplier (CIFAR-style), else full width."""
    return {} if name.endswith("_imagenet") else {"width": 0.125}


@pytest.mark.parametrize("name, options", [(name, small_options(name)) for name in MODEL_NAMES] + [
    ("preresnet", {"depth": 20, "block": "basic", "width": 0.25}),
    ("wide_resnet", {"depth": 10, "widen_factor": 2, "dropout": 0.3, "width": 0.5}),
])
def test_one_training_step_gives_logits_and_finite_gradients(name, options):
    torch.manual_seed(0)
    model = build_model(name, CLASSES, **options).train()
    # 32x32 is the CIFAR size; it is also the smallest input the 224px models accept with batch 2
    # (their last stage sees 1x1 maps, which BatchNorm in training mode still handles).
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, CLASSES)
    F.cross_entropy(logits, torch.tensor([0, CLASSES - 1])).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name


# torchvision's published totals for its ImageNet VGGs (VGG*_Weights.DEFAULT.meta["num_params"]).
TORCHVISION_VGG = {11: 132_863_336, 13: 133_047_848, 16: 138_357_544, 19: 143_667_240}


def linear(inputs: int, outputs: int) -> int:
    return inputs * outputs + outputs


@pytest.mark.parametrize("depth", sorted(TORCHVISION_VGG))
def test_cifar_vgg_size_is_torchvision_features_plus_cifar_head(depth):
    # Same convolutions as torchvision's VGG; swap its 25088-4096-4096-1000 head for 512-512-512-10.
    # VGG-16 gives 14,714,688 conv + 530,442 head = 15,245,130 (the ~15.25M of the paper's VGG-16).
    imagenet_head = linear(512 * 7 * 7, 4096) + linear(4096, 4096) + linear(4096, 1000)
    features = TORCHVISION_VGG[depth] - imagenet_head
    expected = features + linear(512, 512) + linear(512, 512) + linear(512, 10)
    assert count(build_on_meta(f"vgg{depth}", 10)) == expected


PUBLISHED_COUNTS = [
    # (name, classes, options, exact count, source)
    ("vgg16", 10, {}, 15_245_130, "torchvision VGG-16 features + CIFAR head, see test above"),
    ("vgg16_bn", 10, {}, 15_245_130 + 2 * 4224, "plus BatchNorm weight+bias on 4224 conv channels"),
    # osmr/imgclsmob (pytorchcv) wrn28_10_cifar10 / wrn28_10_cifar100, official bias-free layout;
    # the paper's table (Zagoruyko & Komodakis 2016) gives 36.5M.
    ("wide_resnet", 10, {}, 36_479_194, "imgclsmob wrn28_10_cifar10"),
    ("wide_resnet", 100, {}, 36_536_884, "imgclsmob wrn28_10_cifar100"),
    # He et al. 2016 (identity mappings) give 1.7M for both ResNet-110 and ResNet-164; exact
    # counts from imgclsmob preresnet110_cifar10 and preresnet164bn_cifar10 / _cifar100.
    ("preresnet", 10, {"depth": 110, "block": "basic"}, 1_730_522,
     "imgclsmob preresnet110_cifar10"),
    ("preresnet", 10, {"depth": 164}, 1_703_258, "imgclsmob preresnet164bn_cifar10"),
    ("preresnet", 100, {"depth": 164}, 1_726_388, "imgclsmob preresnet164bn_cifar100"),
    # torchvision: ResNet18_Weights / ResNet50_Weights / VGG16_Weights .meta["num_params"].
    ("resnet18_imagenet", 1000, {}, 11_689_512, "torchvision ResNet18_Weights"),
    ("resnet50_imagenet", 1000, {}, 25_557_032, "torchvision ResNet50_Weights"),
    ("vgg16_imagenet", 1000, {}, 138_357_544, "torchvision VGG16_Weights"),
]


@pytest.mark.parametrize("name, classes, options, expected, source", PUBLISHED_COUNTS)
def test_full_width_parameter_count_matches_published(name, classes, options, expected, source):
    assert count(build_on_meta(name, classes, **options)) == expected, source


def test_wide_resnet_is_within_half_a_percent_of_the_swa_code_count():
    # 36,546,980 is WRN-28-10 for CIFAR-100 in the SWA / meliketoy code, whose convolutions carry
    # biases (10,096 of them); the official layout here has none, so it is 0.03% smaller.
    assert count(build_on_meta("wide_resnet", 100)) == pytest.approx(36_546_980, rel=0.005)


def test_paper_preresnet110_is_the_bottleneck_network_of_the_swa_code():
    # No public table lists the SWA code's PreResNet-110 (bottleneck, n=12), so derive it from
    # the published 164-layer one (n=18): each stage drops 6 bottleneck blocks whose input already
    # has 4p channels, each worth 3 BatchNorms (8p + 2p + 2p) and convs 4p*p + 9p*p + p*4p.
    per_block = sum(17 * p * p + 12 * p for p in (16, 32, 64))
    expected = 1_726_388 - 6 * per_block  # imgclsmob preresnet164bn_cifar100
    assert expected == 1_169_972
    assert count(build_on_meta("preresnet", 100)) == expected
    assert count(build_on_meta("preresnet", 100, depth=110, block="bottleneck")) == expected


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "wide_resnet", "preresnet"])
def test_width_scales_parameters_about_quadratically(name):
    ratio = count(build_on_meta(name, 10, width=0.5)) / count(build_on_meta(name, 10))
    assert 0.2 < ratio < 0.3


def test_unknown_model_lists_the_choices():
    with pytest.raises(UsageError, match="unknown model 'resnet1000'") as error:
        build_model("resnet1000", 10)
    assert all(name in str(error.value) for name in MODEL_NAMES)


@pytest.mark.parametrize("name, num_classes, options, message", [
    ("wide_resnet", 10, {"depth": 27}, "6n\\+4"),
    ("wide_resnet", 10, {"widen_factor": 0}, "widen_factor"),
    ("preresnet", 10, {"depth": 100}, "9n\\+2"),
    ("preresnet", 10, {"depth": 21, "block": "basic"}, "6n\\+2"),
    ("preresnet", 10, {"block": "wide"}, "block"),
    ("vgg16", 10, {"depth": 19}, "no option depth; its options are: width, dropout"),
    ("vgg16", 10, {"width": 0}, "width"),
    ("vgg16", 10, {"width": -0.5}, "width"),
    ("vgg16", 10, {"dropout": 1.0}, "dropout"),
    ("vgg16", 0, {}, "num_classes"),
    ("resnet50_imagenet", 10, {"width": 0.5}, "only width 1.0"),
])
def test_invalid_option_is_a_usage_error(name, num_classes, options, message):
    with pytest.raises(UsageError, match=message) as error:
        build_model(name, num_classes, **options)
    assert "\n" not in str(error.value)


CONFIGS = sorted(CONF_DIR.glob("*.yaml"))


def model_config(path):
    from spectral_sweep.config.schema import compose

    return compose(f"model={path.stem}").model


def test_every_registered_model_has_a_config():
    names = {model_config(path).name for path in CONFIGS}
    assert names == set(MODEL_NAMES)
    assert {path.stem for path in CONFIGS} >= {"vgg16", "wrn28_10", "preresnet110"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_config_mirrors_the_constructor_and_builds(path):
    """The typed model config holds exactly the constructor's keywords, with its defaults."""
    model = model_config(path)
    name, options = model.name, model.options()
    parameters = inspect.signature(MODELS[name]).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.name not in ("num_classes", *FROM_DATA)}
    assert path.read_text().startswith("# ")
    assert options.keys() == defaults.keys()
    assert options == defaults, "the config's values should be the constructor's defaults"
    model = build_on_meta(name, 10, **{**options, **small_options(name)})
    assert count(model) > 0


# ----------------------------------------------------------------------------------------------
# The data's image shape: grey 28x28 images (MNIST-style) in the paper's CIFAR models

GREY = [("vgg11_bn", {"width": 0.125}), ("vgg11", {"width": 0.125}),
        ("wide_resnet", {"depth": 10, "widen_factor": 1, "width": 0.25}),
        ("preresnet", {"depth": 20, "block": "basic", "width": 0.25})]


@pytest.mark.parametrize("name, options", GREY, ids=[name for name, _ in GREY])
def test_grey_28x28_images_give_logits_and_finite_gradients(name, options):
    torch.manual_seed(0)
    shape = {"in_channels": 1, **({"image_size": 28} if name.startswith("vgg") else {})}
    model = build_model(name, CLASSES, **shape, **options).train()
    logits = model(torch.randn(3, 1, 28, 28))
    assert logits.shape == (3, CLASSES)
    F.cross_entropy(logits, torch.tensor([0, 1, CLASSES - 1])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # only the first convolution sees the channels: 3 -> 1 removes 2 input planes of its kernels
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1
    assert count(build_model(name, CLASSES, **options)) - count(model) == 2 * first.out_channels * 9


# Measured before in_channels, image_size and ceil_mode pools existed (commit 1227c85): parameter
# count, the first four logits of sample 0 and the sum of all |logits|, eval mode, seed 0, a
# fixed input of 2 x 3 x 32 x 32, 10 classes. 32x32 / 3-channel models must not move.
BEFORE = {
    "vgg11_bn": (154_218, [-0.046642, -0.024432, 0.058756, 0.011226], 1.26342),
    "vgg11": (153_530, [-0.046639, -0.024435, 0.058755, 0.011228], 1.26342),
    "wide_resnet": (5_166, [0.390977, -0.695992, -0.339563, 0.262401], 9.88619),
    "preresnet": (17_486, [1.610226, 1.80919, -0.294196, 0.158184], 18.15655),
}


@pytest.mark.parametrize("name, options", GREY, ids=[name for name, _ in GREY])
def test_32x32_three_channel_models_are_what_they_were(name, options):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    outputs = []
    for shape in ({}, {"in_channels": 3, **({"image_size": 32} if name.startswith("vgg") else {})}):
        torch.manual_seed(0)
        model = build_model(name, 10, **shape, **options).eval()
        with torch.no_grad():
            outputs.append(model(x))
        params, first, total = BEFORE[name]
        assert count(model) == params
        assert outputs[-1][0, :4].tolist() == pytest.approx(first, abs=1e-5)
        assert float(outputs[-1].abs().sum()) == pytest.approx(total, rel=1e-5)
    assert torch.equal(*outputs)          # the data's shape, passed explicitly, is the default


def test_vgg_at_28x28_ends_on_a_1x1_map_and_larger_images_widen_the_head():
    model = build_model("vgg11", 10, width=0.125, in_channels=1, image_size=28)
    assert model.features(torch.zeros(1, 1, 28, 28)).shape[-2:] == (1, 1)
    wide = build_model("vgg11", 10, width=0.125, image_size=64)   # 64 -> 2x2 after five pools
    assert wide.classifier[1].in_features == 4 * model.classifier[1].in_features
    assert wide(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(UsageError, match="in_channels must be a positive integer"):
        build_model("vgg11", 10, in_channels=0)


class ThreeChannelNet(torch.nn.Module):
    """A user's model from before in_channels existed: it takes num_classes and its own keys only."""

    def __init__(self, num_classes: int, hidden: int = 4):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, hidden, 3), torch.nn.AdaptiveAvgPool2d(1),
                                        torch.nn.Flatten(), torch.nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.body(x)


def test_build_target_hands_the_data_shape_only_to_models_that_take_it():
    vgg = build_target("spectral_sweep.models.vgg.vgg11", 10, input_shape=(1, 28), width=0.125)
    assert vgg(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    resnet = build_target("spectral_sweep.models.preresnet.PreResNet", 10, input_shape=(1, 28), depth=8,
                          block="basic", width=0.25)
    assert resnet.stem.in_channels == 1     # no image_size in its signature, none passed
    mine = build_target(f"{__name__}.ThreeChannelNet", 5, input_shape=(3, 28), hidden=6)
    assert mine(torch.zeros(2, 3, 28, 28)).shape == (2, 5)       # 3 channels: built as always
    with pytest.raises(UsageError, match="takes no in_channels, but the data's images have 1 channel;") as error:
        build_target(f"{__name__}.ThreeChannelNet", 5, input_shape=(1, 28))
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="resnet18_imagenet takes no in_channels"):
        build_target("spectral_sweep.models.imagenet.resnet18_imagenet", 10, input_shape=(1, 28))
