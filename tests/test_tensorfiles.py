"""Binary tensors in sidecar files (encodings/tensorfiles.py, docs/format.md "Binary tensors").

A network whose tensors live in a .npz or .safetensors file must load to exactly the network of the
same document with the values inline (theta, inputs, targets bit for bit, and the same report);
every defect of a sidecar is a one-line InputError naming the JSON file, the tensor and the sidecar
(and exit code 2 from the CLI); ``kinkcheck import`` moves large tensors to ``<stem>.npz``.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.encodings import tensorfiles as TF
from kinkcheck.encodings.errors import InputError
from kinkcheck.encodings.formats import FloatFormat

from strategies import networks


def _mlp(dtype="float32", seed=0, sizes=(5, 4, 3), batch=3):
    rng = np.random.default_rng(seed)
    fmt = FloatFormat.from_spec(dtype)
    params, layers = {}, []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = fmt.round_array(rng.standard_normal((b, a)))
        params[f"b{i}"] = fmt.round_array(rng.standard_normal(b))
        layers.append({"op": "linear", "weight": f"W{i}", "bias": f"b{i}"})
        layers.append({"op": "relu"})
    layers.pop()
    X = fmt.round_array(rng.standard_normal((batch, sizes[0])))
    Y = fmt.round_array(rng.standard_normal((batch, sizes[-1])))
    doc = {
        "kinkcheck": 1,
        "dtype": dtype,
        "params": {k: {"shape": list(v.shape), "values": v.tolist()} for k, v in params.items()},
        "inputs": {"shape": list(X.shape), "values": X.tolist()},
        "targets": {"shape": list(Y.shape), "values": Y.tolist()},
        "layers": layers,
        "loss": {"op": "mse"},
    }
    return doc, {**params, "inputs": X, "targets": Y}


def _sidecar_doc(doc, arrays, file):
    out = dict(doc)
    out["params"] = {k: {"shape": v["shape"], "key": k} for k, v in doc["params"].items()}
    out["inputs"] = {"shape": doc["inputs"]["shape"], "file": file, "key": "inputs"}
    out["targets"] = {"shape": doc["targets"]["shape"]}  # key defaults to the name, file to "tensors"
    out["tensors"] = file
    return out


def write_safetensors(path, arrays: dict, dtype="F32", header_extra=None, offsets=None):
    """A minimal safetensors writer (the format's documented layout), for the tests."""
    header, blobs, pos = {}, [], 0
    for k, a in arrays.items():
        if dtype == "BF16":
            raw = (np.asarray(a, dtype=np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = np.asarray(a, dtype={"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype]).tobytes()
        header[k] = {"dtype": dtype, "shape": list(np.shape(a)), "data_offsets": (offsets or {}).get(k, [pos, pos + len(raw)])}
        blobs.append(raw)
        pos += len(raw)
    header["__metadata__"] = {"format": "pt"}
    header.update(header_extra or {})
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def _same_net(a, b):
    assert np.array_equal(a.theta.view(np.uint64), b.theta.view(np.uint64))
    assert np.array_equal(a.inputs.view(np.uint64), b.inputs.view(np.uint64))
    assert np.array_equal(a.targets.view(np.uint64), b.targets.view(np.uint64))
    assert a.theta.dtype == b.theta.dtype == np.float64
    assert [p.name for p in a.params] == [p.name for p in b.params]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", {"exponent_bits": 4, "fraction_bits": 3}])
def test_npz_and_safetensors_load_the_same_network(tmp_path, dtype):
    doc, arrays = _mlp(dtype)
    net = kinkcheck.load(doc)
    st_dtype = TF.storage_dtype(net.fmt)
    np.savez(tmp_path / "t.npz", **{k: v.astype(st_dtype) for k, v in arrays.items()})
    (tmp_path / "a.json").write_text(json.dumps(_sidecar_doc(doc, arrays, "t.npz")))
    _same_net(net, kinkcheck.load(tmp_path / "a.json"))
    sdt = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}.get(net.fmt.name, "F64")
    write_safetensors(tmp_path / "t.safetensors", arrays, sdt)
    (tmp_path / "b.json").write_text(json.dumps(_sidecar_doc(doc, arrays, "t.safetensors")))
    _same_net(net, kinkcheck.load(str(tmp_path / "b.json")))
    r1, r2 = kinkcheck.verify(net, values=True).to_dict(), kinkcheck.verify(str(tmp_path / "b.json"), values=True).to_dict()
    for r in (r1, r2):
        r.pop("time_s"), r.pop("network"), r["decision"].pop("time_s", None)
    assert r1 == r2


def test_signed_zeros_infinities_subnormals_exact_bits(tmp_path):
    doc, arrays = _mlp("float32")
    W = arrays["W0"].copy()
    W.reshape(-1)[:5] = [-0.0, np.inf, -np.inf, 2.0**-149, -(2.0**-126)]
    arrays["W0"] = W
    np.savez(tmp_path / "t.npz", **{k: v.astype(np.float32) for k, v in arrays.items()})
    (tmp_path / "a.json").write_text(json.dumps(_sidecar_doc(doc, arrays, "t.npz")))
    net = kinkcheck.load(tmp_path / "a.json")
    got = net.theta[:5]
    assert np.array_equal(got.view(np.uint64), np.array([-0.0, np.inf, -np.inf, 2.0**-149, -(2.0**-126)]).view(np.uint64))
    # a certificate-style inlined document reproduces the same network
    inl = TF.inline_tensors(net)
    assert "tensors" not in inl and "values" in inl["params"]["W0"]
    _same_net(net, kinkcheck.load(json.loads(json.dumps(inl))))


@settings(max_examples=15)
@given(networks(max_width=5), st.booleans())
def test_externalize_round_trip(tmp_path_factory, doc, everything):
    """Any network: moving its tensors out and reading them back gives the same network."""
    d = tmp_path_factory.mktemp("ext")
    net = kinkcheck.load(doc)
    out, arrays = TF.externalize(doc, net, "n.npz", inline_max=0 if everything else 3)
    TF.write_npz(d / "n.npz", arrays)
    (d / "n.json").write_text(json.dumps(out))
    back = kinkcheck.load(d / "n.json")
    assert np.array_equal(net.theta.view(np.uint64), back.theta.view(np.uint64))
    assert np.array_equal(net.inputs.view(np.uint64), back.inputs.view(np.uint64))
    if net.targets is not None:
        assert np.array_equal(np.asarray(net.targets), np.asarray(back.targets))
    assert [p.trainable for p in net.params] == [p.trainable for p in back.params]


def _err(tmp_path, doc, match):
    p = tmp_path / "net.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError) as ei:
        kinkcheck.load(p)
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg, msg
    assert match in msg, msg
    return msg


def test_errors_name_file_tensor_and_defect(tmp_path):
    doc, arrays = _mlp("float32")
    good = {k: v.astype(np.float32) for k, v in arrays.items()}
    np.savez(tmp_path / "t.npz", **good)
    base = _sidecar_doc(doc, arrays, "t.npz")

    d = json.loads(json.dumps(base))
    d["params"]["W0"]["shape"] = [4, 4]
    m = _err(tmp_path, d, "shape [4, 5] in the file, declared [4, 4]")
    assert "params.W0" in m and "t.npz" in m and "'W0'" in m

    d = json.loads(json.dumps(base))
    d["params"]["W0"]["key"] = "nope"
    assert "W0" in _err(tmp_path, d, "no such array (the file has: ")

    d = json.loads(json.dumps(base))
    d["tensors"] = "missing.npz"
    _err(tmp_path, d, "missing.npz: no such file")

    d = json.loads(json.dumps(base))
    d["tensors"] = "t.bin"
    _err(tmp_path, d, "unknown tensor file type")

    d = json.loads(json.dumps(base))
    del d["tensors"]
    _err(tmp_path, d, 'no "file" for this tensor and no top-level "tensors"')

    d = json.loads(json.dumps(base))
    d["params"]["W0"]["values"] = [[0] * 5] * 4
    _err(tmp_path, d, "not both")

    # dtype, NaN, representability, pickles
    bad = dict(good, W0=good["W0"].astype(np.int32))
    np.savez(tmp_path / "t.npz", **bad)
    _err(tmp_path, base, "dtype int32 is not a binary floating-point type")
    bad = dict(good, W0=good["W0"].copy())
    bad["W0"][1, 2] = np.nan
    np.savez(tmp_path / "t.npz", **bad)
    _err(tmp_path, base, "params.W0[1,2]: NaN is not allowed (from t.npz)")
    bad = dict(good, W0=good["W0"].astype(np.float64))
    bad["W0"][2, 3] = 0.1
    np.savez(tmp_path / "t.npz", **bad)
    m = _err(tmp_path, base, "params.W0[2,3]")
    assert "(from t.npz)" in m and "representable" in m
    d = json.loads(json.dumps(base))
    d["rounding"] = "nearest"
    (tmp_path / "net.json").write_text(json.dumps(d))
    net = kinkcheck.load(tmp_path / "net.json")
    assert net.rounded == ["params.W0[2,3]"] and net.theta[2 * 5 + 3] == float(np.float32(0.1))
    obj = dict(good)
    np.savez(tmp_path / "t.npz", **obj, W0x=np.array([object()], dtype=object))
    d = json.loads(json.dumps(base))
    d["params"]["W0"]["key"] = "W0x"
    d["params"]["W0"]["shape"] = [1]
    _err(tmp_path, d, "pickled data is refused")
    (tmp_path / "t.npz").write_bytes(b"not a zip")
    _err(tmp_path, base, "not a readable .npz file")


def test_safetensors_bounds(tmp_path):
    doc, arrays = _mlp("float32")
    base = _sidecar_doc(doc, arrays, "t.safetensors")
    write_safetensors(tmp_path / "t.safetensors", arrays, "F32", offsets={"W0": [0, 10**9]})
    _err(tmp_path, base, "data_offsets [0, 1000000000] do not hold 20 values of F32")
    write_safetensors(tmp_path / "t.safetensors", arrays, "F32", header_extra={"W0": {"dtype": "I64", "shape": [4, 5], "data_offsets": [0, 160]}})
    _err(tmp_path, base, "dtype 'I64' is not a binary floating-point type")
    (tmp_path / "t.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    _err(tmp_path, base, "header size 1099511627776 exceeds")
    (tmp_path / "t.safetensors").write_bytes(b"\x01")
    _err(tmp_path, base, "not a readable .safetensors file")
    write_safetensors(tmp_path / "t.safetensors", arrays, "F32")
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-8])  # the last tensor runs past the end
    _err(tmp_path, base, "do not hold")


def test_npz_header_checked_before_reading(tmp_path):
    """A member whose header claims a huge shape is refused from the header (nothing allocated)."""
    doc, arrays = _mlp("float32")
    good = {k: v.astype(np.float32) for k, v in arrays.items()}
    np.savez(tmp_path / "t.npz", **good)
    with zipfile.ZipFile(tmp_path / "t.npz", "a") as z:
        hdr = np.lib.format.header_data_from_array_1_0(np.zeros((2, 2), np.float32))
        hdr["shape"] = (10**6, 10**6)
        import io

        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, hdr)
        z.writestr("huge.npy", buf.getvalue())
    d = _sidecar_doc(doc, arrays, "t.npz")
    d["params"]["W0"]["key"] = "huge"
    _err(tmp_path, d, "shape [1000000, 1000000] in the file, declared [4, 5]")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", "from kinkcheck.cli import main; main()", *args], capture_output=True, text=True, check=False, cwd=cwd)


def test_cli_bad_sidecar_exit_2(tmp_path):
    doc, arrays = _mlp("float32")
    np.savez(tmp_path / "t.npz", **{k: v.astype(np.float32) for k, v in arrays.items() if k != "b1"})
    (tmp_path / "net.json").write_text(json.dumps(_sidecar_doc(doc, arrays, "t.npz")))
    r = _cli("verify", str(tmp_path / "net.json"))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "params.b1" in lines[0] and "t.npz" in lines[0] and "Traceback" not in r.stderr


def test_cli_import_writes_sidecar(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(80, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(m), str(path))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((3, 80)).astype(np.float32))
    r = _cli("import", str(path), "--inputs", str(tmp_path / "x.npy"), "-o", str(tmp_path / "net.json"))
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "net.json").read_text())
    assert d["tensors"] == "net.npz"
    big = [k for k, v in d["params"].items() if "values" not in v]
    assert big == ["l0.weight"]  # 5120 values > 4096; the rest (64 + 128 + 2 values, the 240 inputs) inline
    assert "values" in d["inputs"]
    with np.load(tmp_path / "net.npz", allow_pickle=False) as z:
        assert z[big[0]].dtype == np.float32
    r2 = _cli("import", str(path), "--inputs", str(tmp_path / "x.npy"), "-o", str(tmp_path / "inl.json"), "--inline")
    assert r2.returncode == 0, r2.stderr
    assert not (tmp_path / "inl.npz").exists()
    a, b = kinkcheck.load(tmp_path / "net.json"), kinkcheck.load(tmp_path / "inl.json")
    assert np.array_equal(a.theta.view(np.uint64), b.theta.view(np.uint64))
    assert np.array_equal(a.theta[: 64 * 80], m[0].weight.detach().numpy().astype(np.float64).reshape(-1))


def test_certificate_of_a_sidecar_network_is_self_contained(tmp_path):
    doc, arrays = _mlp("float32", sizes=(3, 2, 1), batch=2)
    np.savez(tmp_path / "t.npz", **{k: v.astype(np.float32) for k, v in arrays.items()})
    (tmp_path / "net.json").write_text(json.dumps(_sidecar_doc(doc, arrays, "t.npz")))
    cert = kinkcheck.verify(str(tmp_path / "net.json"), values=True).certificate()
    assert "tensors" not in cert["network"] and all("values" in v for v in cert["network"]["params"].values())
    (tmp_path / "t.npz").unlink()  # the certificate alone must suffice
    assert kinkcheck.check_certificate(json.loads(json.dumps(cert)))["valid"] is True
