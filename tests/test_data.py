"""coded_lib.train.data against independent readers, numpy operations and the published statistics."""
import gzip
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from coded_lib.train import data

needs_fashion = pytest.mark.skipif(
    not all(data._idx_file(data.FASHION_DIR, s) for pair in data.FASHION_FILES.values() for s in pair),
    reason="Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def fashion_raw(tmp_path_factory):
    """Fashion-MNIST read by torchvision's own idx reader, from unpacked copies of the Debian files."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    tmp = tmp_path_factory.mktemp("fmnist")
    out = {}
    for split, (img, lab) in data.FASHION_FILES.items():
        for stem in (img, lab):
            with gzip.open(data.FASHION_DIR / (stem + ".gz")) as src, open(tmp / stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        out[split] = (read_image_file(str(tmp / img)).numpy(), read_label_file(str(tmp / lab)).numpy())
    return out


@needs_fashion
def test_fashion_mnist_matches_torchvision_reader(fashion_raw):
    for split, n in (("train", 60000), ("val", 10000)):
        ds = data.load("fashion_mnist", split)
        images, labels = fashion_raw[split]
        assert len(ds) == n
        np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
        np.testing.assert_array_equal(ds.targets, labels)
        assert np.bincount(labels).tolist() == [n // 10] * 10  # Fashion-MNIST is balanced


@needs_fashion
def test_fashion_mnist_normalization_constants(fashion_raw):
    x = fashion_raw["train"][0].astype(np.float64) / 255
    assert abs(x.mean() - data.INFO["fashion_mnist"].mean[0]) < 1e-3
    assert abs(x.std() - data.INFO["fashion_mnist"].std[0]) < 1e-3


@needs_fashion
def test_eval_transform_matches_torchvision(fashion_raw):
    _, val = data.get_datasets("fashion_mnist", augment=False)
    ref = T.Compose([T.ToTensor(), T.Normalize((0.2860,), (0.3530,))])
    for i in (0, 17, 9999):
        x, y = val[i]
        torch.testing.assert_close(x, ref(Image.fromarray(fashion_raw["val"][0][i])))
        assert y == fashion_raw["val"][1][i]


@needs_fashion
def test_rot90_is_rotated_test_set(fashion_raw):
    rot = data.load("fashion_mnist_rot90", "val")
    images, labels = fashion_raw["val"]
    for i in (0, 5, 123):
        np.testing.assert_array_equal(rot.images[i, 0].numpy(), np.rot90(images[i]))
    np.testing.assert_array_equal(rot.targets, labels)
    ood = data.get_ood("fashion_mnist")
    assert set(ood) == {"digits", "fashion_mnist_rot90"}
    assert len(ood["digits"]) == 1797 and len(ood["fashion_mnist_rot90"]) == 10000


@needs_fashion
def test_augmented_sample_is_a_padded_crop(fashion_raw):
    train, _ = data.get_datasets("fashion_mnist", train_subset=50, seed=3)
    torch.manual_seed(0)
    for k in range(10):
        x, y = train[k]
        raw = fashion_raw["train"][0][train.indices[k]]
        padded = np.pad(raw, 2)
        crops = [c for i in range(5) for j in range(5) for c in (padded[i:i + 28, j:j + 28], padded[i:i + 28, j:j + 28][:, ::-1])]
        got = np.rint((x[0].numpy() * 0.3530 + 0.2860) * 255)
        assert any(np.array_equal(got, c) for c in crops)


def test_digits_scaled_like_fashion():
    from sklearn.datasets import load_digits

    d = load_digits()
    train, val = data.get_datasets("digits", augment=False)
    assert len(train) + len(val) == 1797 and len(val) == 359
    # every original image is in exactly one split: downsampling ours back to 8x8 recovers it
    both = torch.cat([train.images, val.images]).float()
    small = torch.nn.functional.adaptive_avg_pool2d(both / 255 * 16, 8)[:, 0].numpy()
    ref = d.images
    corr = np.corrcoef(small.reshape(len(small), -1)[:50], ref.reshape(len(ref), -1))[:50, 50:]
    assert (corr.max(axis=1) > 0.95).all()
    assert both.max() == 255 and both.min() == 0  # full 0..255 range, like Fashion-MNIST
    assert sorted(np.bincount(train.targets + val.targets).tolist()) == sorted(np.bincount(d.target).tolist())
    x, _ = val[0]
    assert x.shape == (1, 28, 28)
    ref_x = (val.images[0].float() / 255 - 0.2860) / 0.3530
    torch.testing.assert_close(x, ref_x)


def test_balanced_subset():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 7, size=1000)
    idx = data.balanced_subset(targets, 140, seed=1)
    assert len(np.unique(idx)) == 140 and idx.min() >= 0 and idx.max() < 1000
    assert np.bincount(targets[idx], minlength=7).tolist() == [20] * 7
    idx2 = data.balanced_subset(targets, 143, seed=1)
    counts = np.bincount(targets[idx2], minlength=7)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 143
    np.testing.assert_array_equal(idx, data.balanced_subset(targets, 140, seed=1))  # seeded
    assert not np.array_equal(idx, data.balanced_subset(targets, 140, seed=2))
    # a class with too few samples gives all it has, the others fill in
    skew = np.array([0] * 3 + [1] * 100)
    assert np.bincount(skew[data.balanced_subset(skew, 20, 0)]).tolist() == [3, 17]
    with pytest.raises(ValueError, match="allowed: 1 .. 103"):
        data.balanced_subset(skew, 500)


def test_loader_order_depends_on_seed_and_epoch_only():
    ds = torch.utils.data.TensorDataset(torch.arange(100).float(), torch.arange(100))

    def order(seed, epoch, rank=0, world=1):
        loader = data.make_loader(ds, 10, train=True, seed=seed, rank=rank, world_size=world)
        list(data.make_loader(ds, 10, train=True, seed=seed))  # another loader's use changes nothing
        data.set_epoch(loader, epoch)
        return torch.cat([y for _, y in loader]).tolist()

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
    assert sorted(order(0, 3)) == list(range(100))
    halves = order(0, 3, 0, 2) + order(0, 3, 1, 2)
    assert sorted(halves) == list(range(100))
    val = data.make_loader(ds, 16, train=False, rank=1, world_size=3)
    assert torch.cat([y for _, y in val]).tolist() == list(range(1, 100, 3))


def test_missing_data_sets_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("CODED_DOWNLOAD", raising=False)
    monkeypatch.delenv("IMAGENET_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="download=true.*CODED_DATA"):
        data.get_datasets("cifar10", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="IMAGENET_DIR"):
        data.get_datasets("imagenet")
    with pytest.raises(ValueError, match="allowed: .*cifar100"):
        data.get_datasets("mnist")
    assert data.OOD["cifar10"] == ("cifar100",) and data.OOD["cifar100"] == ("cifar10",)
    assert len(data.class_names("cifar100")) == 100 and data.class_names("cifar10")[3] == "cat"


def test_timm_randaugment_strings():
    """The paper's (N, M) on timm's scale reach timm's RandAugment unchanged."""
    from timm.data.auto_augment import RandAugment

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    for name, s, n, m, mstd in (("cifar10", "rand-m4-n3", 3, 4, 0), ("cifar100", "rand-m2-n1", 1, 2, 0),
                                ("fashion_mnist", "rand-m7-n2-mstd0.5", 2, 7, 0.5)):
        tf = data.make_transform(name, True, randaugment=s)
        ra = [t for t in tf.transforms if isinstance(t, RandAugment)]
        assert len(ra) == 1 and ra[0].num_layers == n
        assert {op.magnitude for op in ra[0].ops} == {m} and {op.magnitude_std for op in ra[0].ops} == {mstd}
        if name.startswith("cifar"):  # RandAugment first, then the pad-4 crop and flip (the authors' code)
            assert isinstance(tf.transforms[0], RandAugment)
            assert isinstance(tf.transforms[1], T.RandomCrop) and tf.transforms[1].padding == 4
            assert isinstance(tf.transforms[2], T.RandomHorizontalFlip)
            assert tf(rgb).shape == (3, 32, 32)
    # grey images go through timm's PIL ops too
    x = tf(torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8))
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32


def test_imagenet_folder_transforms(tmp_path):
    """random-resized-crop at 160 px for training, 224 px evaluation, random erasing (p 0.4, 3 counts)."""
    from timm.data.random_erasing import RandomErasing

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (300, 260, 3), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    train, val = data.get_datasets("imagenet", data_dir=str(tmp_path), randaugment="rand-m7-n2-mstd0.5",
                                   random_erasing=0.4, random_erasing_count=3, train_size=160, eval_size=224)
    assert train[0][0].shape == (3, 160, 160) and val[3][0].shape == (3, 224, 224) and val[3][1] == 1
    erasing = [t for t in train.transform.transforms if isinstance(t, RandomErasing)]
    assert len(erasing) == 1 and erasing[0].probability == 0.4 and erasing[0].max_count == 3
    plain, _ = data.get_datasets("imagenet", data_dir=str(tmp_path), augment=False, eval_size=224)
    first = plain[0][0]
    assert first.shape == (3, 224, 224)
    torch.testing.assert_close(plain[0][0], first)  # no randomness without augmentation
    assert data.class_names("imagenet", str(tmp_path)) == ("n01", "n02")


def test_every_randaugment_op_runs_at_the_papers_magnitudes():
    """Each op of each preset's RandAugment, forced on: timm's 'Posterize' asks Pillow for 0 bits
    at M = 2 (CIFAR-100's rand-m2-n1), which Pillow >= 12 rejects (data._posterize gives the black
    image of older Pillow instead); this applies every op once."""
    from PIL import Image

    for mean, s in (((0.5,) * 3, "rand-m4-n3"), ((0.5,) * 3, "rand-m2-n1"), ((0.5,) * 3, "rand-m7-n2-mstd0.5"),
                    ((0.5,) * 3, "rand-m10-n2"), ((0.5,), "rand-m2-n1")):
        ra = data._randaugment(s, 32, mean)
        img = Image.new("RGB" if len(mean) == 3 else "L", (32, 32), 128)
        for op in ra.ops:
            op.prob = 1.0
            assert op(img).size == (32, 32), (s, op.name)
