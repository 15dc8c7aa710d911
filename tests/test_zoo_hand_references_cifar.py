"""The CIFAR zoo computes its papers' functions: each spec equals a hand-written module from the authors' code.

One reference per family, parametrized by depth and width, written from the paper and the code its authors published
(not from the specs): ResNets with option A/B shortcuts (He et al. 2016, sec. 4.2; akamaster/pytorch_resnet_cifar10's
names), pre-activation bottleneck ResNets (He et al. 2016b; KaimingHe/resnet-1k-layers, resnet-pre-act.lua), wide
ResNets (Zagoruyko & Komodakis 2016; szagoruyko/wide-residual-networks), DenseNet-BC (Huang et al. 2017;
liuzhuang13/DenseNet, models/densenet.lua) and PyramidNet (Han et al. 2017; dyhan0920/PyramidNet-PyTorch's names).
Every spec runs at its published size: on one thread the largest (DenseNet-BC-190, WRN-28-10) take about 2 s a forward.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
from tests.conftest import SPECS
from tests.test_zoo_hand_references import same_function

pytestmark = pytest.mark.usefixtures("one_thread")


def cifar_batch() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def check(name: str, reference: nn.Module, variables: dict | None = None) -> None:
    """The spec (at its published size unless `variables` says otherwise) computes the reference's function."""
    spec = netdsl.compile(SPECS / f"{name}.yaml", variables=variables, seed=0)
    assert same_function(spec, reference, cifar_batch()).shape == (2, 10)


# ------------------------------------------------------------------ ResNet, option A and B shortcuts (He et al. 2016)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, c: int, stride: int, option: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.option, self.pad = option, (c - cin) // 2
        self.shortcut: nn.Module = nn.Sequential()  # identity
        if option == "B" and (stride != 1 or cin != c):
            self.shortcut = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.option == "A" and self.pad:
            # option A: "the shortcut still performs identity mapping, with extra zero entries padded for increasing
            # dimensions"; every other pixel, half the new channels on each side (akamaster's LambdaLayer)
            shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        else:
            shortcut = self.shortcut(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """6n + 2 layers: a 3x3 conv to 16, three stages of n basic blocks at 16/32/64 channels (the first block of stages
    2 and 3 strided), global average pooling, a 10-way linear layer."""

    def __init__(self, n: int, option: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        stages, cin = [], 16
        for i, c in enumerate((16, 32, 64)):
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else c, c, 2 if i > 0 and j == 0 else 1, option) for j in range(n)]))
            cin = c
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean((2, 3)))


@pytest.mark.parametrize(
    ("name", "n", "option"),
    [("cifar_resnet20", 3, "A"), ("cifar_resnet56", 9, "A"), ("cifar_resnet110", 18, "A"), ("cifar_resnet20_b", 3, "B")],
)
def test_cifar_resnet_equals_the_hand_written_resnet(name: str, n: int, option: str) -> None:
    reference = CifarResNet(n, option)
    check(name, reference)
    # the header's claim "paths as akamaster/pytorch_resnet_cifar10": its state_dict keys, not just their shapes
    assert list(netdsl.load(SPECS / f"{name}.yaml").state_dict_shapes()) == list(reference.state_dict())


# ------------------------------------------------------ pre-activation bottleneck ResNet (He et al. 2016b, "Identity Mappings")


class PreActBottleneck(nn.Module):
    """resnet-pre-act.lua's unit: BN-ReLU-conv1x1 (strided), BN-ReLU-conv3x3, BN-ReLU-conv1x1 to `out`. Where the shape
    changes the first BN-ReLU is common to both paths and a strided 1x1 conv projects it; elsewhere the pre-activation
    is on the residual path only and the shortcut is the raw input."""

    def __init__(self, cin: int, out: int, stride: int) -> None:
        super().__init__()
        c = out // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, c, 1, stride, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(c), nn.Conv2d(c, out, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, out, 1, stride, bias=False) if cin != out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv3(F.relu(self.bn3(self.conv2(F.relu(self.bn2(self.conv1(pre)))))))
        return out + (self.shortcut(pre) if self.shortcut is not None else x)


class PreActResNet(nn.Module):
    """9n + 2 layers: a 3x3 conv to 16 (no BN: the first unit's pre-activation follows), three stages of n units to
    64/128/256 channels (bottlenecks 16/32/64), BN-ReLU, global average pooling, a 10-way linear layer."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        stages, cin = [], 16
        for i, out in enumerate((64, 128, 256)):
            stages.append(nn.Sequential(*[PreActBottleneck(cin if j == 0 else out, out, 2 if i > 0 and j == 0 else 1) for j in range(n)]))
            cin = out
        self.layer1, self.layer2, self.layer3 = stages
        self.bn, self.fc = nn.BatchNorm2d(256), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


@pytest.mark.parametrize(("name", "n"), [("preact_resnet164", 18), ("preact_resnet1001", 111)])
def test_preact_resnet_equals_the_hand_written_one(name: str, n: int) -> None:
    check(name, PreActResNet(n))


# ------------------------------------------------------------------- wide ResNet (Zagoruyko & Komodakis 2016)


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3 (strided), BN-ReLU-dropout-conv3x3; a strided 1x1 conv of the first pre-activation where the
    width changes, the raw input elsewhere (pytorch/resnet.py's block; dropout as wide-resnet.lua places it)."""

    def __init__(self, cin: int, c: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn2, self.dropout, self.conv2 = nn.BatchNorm2d(c), nn.Dropout(dropout), nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.convdim = nn.Conv2d(cin, c, 1, stride, bias=False) if cin != c else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = F.relu(self.bn1(x))
        z = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(o1)))))
        return z + (self.convdim(o1) if self.convdim is not None else x)


class WideResNet(nn.Module):
    """WRN-d-k: 6n + 4 layers, a 3x3 conv to 16, three groups of n blocks at 16k/32k/64k, BN-ReLU, 8x8 average pool, fc."""

    def __init__(self, depth: int, k: int, dropout: float = 0.3) -> None:
        super().__init__()
        n = (depth - 4) // 6
        self.conv0 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        stages, cin = [], 16
        for i, c in enumerate((16 * k, 32 * k, 64 * k)):
            stages.append(nn.Sequential(*[WideBlock(cin if j == 0 else c, c, 2 if i > 0 and j == 0 else 1, dropout) for j in range(n)]))
            cin = c
        self.group0, self.group1, self.group2 = stages
        self.bn, self.fc = nn.BatchNorm2d(cin), nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.group2(self.group1(self.group0(self.conv0(x))))
        return self.fc(F.avg_pool2d(F.relu(self.bn(x)), 8).flatten(1))


@pytest.mark.parametrize(("name", "depth", "k"), [("wrn_28_10", 28, 10), ("wrn_40_4", 40, 4)])
def test_wide_resnet_equals_the_hand_written_one(name: str, depth: int, k: int) -> None:
    check(name, WideResNet(depth, k, dropout=0.3), {"dropout": 0.3})  # in eval mode dropout is the identity on both sides
    # where training would drop: between the convs, after the second BN-ReLU
    graph = netdsl.load(SPECS / f"{name}.yaml", variables={"dropout": 0.3})
    drops = [node for node in graph if node.op == "dropout"]
    assert len(drops) == 3 * (depth - 4) // 6
    assert all(d.inputs[0].endswith(".relu2") and graph.node(d.name.rsplit(".", 1)[0] + ".conv2").inputs == (d.name,) for d in drops)


# --------------------------------------------------------------------- DenseNet-BC (Huang et al. 2017)


class DenseLayer(nn.Module):
    """DenseConnectLayerStandard with bottleneck: BN-ReLU-1x1 conv to 4k, BN-ReLU-3x3 conv to k, appended to the input."""

    def __init__(self, c: int, growth: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, 4 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))], 1)


class DenseNetBC(nn.Module):
    """densenet.lua for CIFAR: a 3x3 conv to 2k, three dense blocks of (L - 4) / 6 layers, transitions BN-ReLU-1x1 conv
    to floor(C / 2)-2x2 average pool between them, then BN-ReLU-8x8 average pool-linear. No conv keeps a bias (the
    code removes them at initialization with cuDNN >= 4)."""

    def __init__(self, depth: int, growth: int) -> None:
        super().__init__()
        n, c = (depth - 4) // 6, 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 1, 1, bias=False)]
        for block in range(3):
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            if block < 2:
                layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AvgPool2d(8), nn.Flatten(), nn.Linear(c, 10)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@pytest.mark.parametrize(("name", "depth", "growth"), [("densenet_bc100_k12", 100, 12), ("densenet_bc190_k40", 190, 40)])
def test_densenet_bc_equals_the_hand_written_one(name: str, depth: int, growth: int) -> None:
    check(name, DenseNetBC(depth, growth))


# --------------------------------------------------------------------- PyramidNet (Han et al. 2017)


class PyramidBlock(nn.Module):
    """BN-conv3x3 (strided)-BN-ReLU-conv3x3-BN, no ReLU after the sum; the shortcut is the input, 2x2-average-pooled
    where strided, with zero channels appended up to the block's width."""

    def __init__(self, cin: int, c: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn2, self.conv2, self.bn3 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(F.relu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = F.avg_pool2d(x, 2, 2, ceil_mode=True) if self.stride != 1 else x
        return out + F.pad(shortcut, (0, 0, 0, 0, 0, out.shape[1] - shortcut.shape[1]))


class PyramidNet(nn.Module):
    """6n + 2 layers: a 3x3 conv to 16 and BN (no ReLU), 3n blocks whose width grows by alpha / 3n each, rounded from
    the code's running float sum, BN-ReLU, 8x8 average pool, fc."""

    def __init__(self, depth: int, alpha: float) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        stages, width, cin = [], 16.0, 16
        for i in range(3):
            blocks = []
            for j in range(n):
                width += alpha / (3 * n)
                blocks.append(PyramidBlock(cin, round(width), 2 if i > 0 and j == 0 else 1))
                cin = round(width)
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final, self.fc = nn.BatchNorm2d(cin), nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.bn1(self.conv1(x)))))
        return self.fc(F.avg_pool2d(F.relu(self.bn_final(x)), 8).flatten(1))


def test_pyramidnet_equals_the_hand_written_one() -> None:
    reference = PyramidNet(110, 48)
    check("pyramidnet110_a48", reference)
    # "paths as dyhan0920/PyramidNet-PyTorch": its keys, not just their shapes
    assert list(netdsl.load(SPECS / "pyramidnet110_a48.yaml").state_dict_shapes()) == list(reference.state_dict())
