"""Ed25519 signatures over a bundle: ``edgeseq keygen``, ``edgeseq sign``, ``--trust KEY.pub``.

Hashes in the manifest catch accidents; anyone can recompute them, so they say nothing about who
wrote a bundle. A signature by a key the user trusts does. Decisions:

- Ed25519 through PyNaCl (libsodium): small, well kept, no parameters to get wrong. PyNaCl is
  imported only to make or check a signature, so an unsigned bundle loaded without ``--trust``
  costs nothing more on a device.
- What is signed: a domain-separated message, ``edgeseq-bundle-signature-v1``, the sha256 of the
  exact ``manifest.json`` bytes, then every listed file's name, size and sha256 in name order. The
  manifest bytes cover labels, preprocessing and the runtime section (a reordered ``labels`` is
  refused); the file lines bind the signature to the files as well as to the manifest listing them.
- The signature lives in the bundle as ``signature.json`` (key id and signature, hex), the one file
  a bundle may hold unlisted: the manifest cannot list the signature made over it.
- Keys are one-line text files (``edgeseq-ed25519-secret HEX`` / ``edgeseq-ed25519-public HEX``);
  the secret key is created with mode 0600 and never overwritten.
- Without ``--trust`` a signature is not checked (it proves nothing without a trusted key), only
  required to be a small plain file; files are hash-checked either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from .errors import EdgeseqError

DOMAIN = b"edgeseq-bundle-signature-v1\n"
SECRET_TAG = "edgeseq-ed25519-secret"
PUBLIC_TAG = "edgeseq-ed25519-public"
SIGNATURE_FORMAT = "edgeseq-signature"


def key_id(public: bytes) -> str:
    """A short name for a public key, shown in messages: the first 16 hex digits of its sha256."""
    return hashlib.sha256(public).hexdigest()[:16]


def _nacl():
    try:
        import nacl.exceptions
        import nacl.signing
    except ImportError:
        raise EdgeseqError("signing and --trust need PyNaCl: pip install pynacl") from None
    return nacl.signing, nacl.exceptions


def _read_key(path, tag: str, what: str) -> bytes:
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise EdgeseqError(f"{what} {p}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size > 4096:
        raise EdgeseqError(f"{what} {p} is not an edgeseq key file (a one-line text file)")
    try:
        with open(p, "rb") as f:
            text = f.read(4096).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise EdgeseqError(f"{what} {p} is not an edgeseq key file") from None
    parts = text.split()
    if len(parts) != 2 or parts[0] != tag or len(parts[1]) != 64:
        other = PUBLIC_TAG if tag == SECRET_TAG else SECRET_TAG
        hint = f" (it is a {'public' if tag == SECRET_TAG else 'secret'} key)" if parts[:1] == [other] else ""
        raise EdgeseqError(f"{what} {p} is not an edgeseq {tag.split('-')[-1]} key{hint}")
    try:
        return bytes.fromhex(parts[1])
    except ValueError:
        raise EdgeseqError(f"{what} {p} is not an edgeseq key file (bad hex)") from None


def read_public_key(path) -> bytes:
    """The 32 raw bytes of an Ed25519 public key file (no PyNaCl needed to read one)."""
    return _read_key(path, PUBLIC_TAG, "public key")


def keygen(out) -> tuple[Path, Path]:
    """Write a new secret key to ``out`` (mode 0600) and its public key to ``out.pub``; refuses to
    replace either (a lost secret key cannot be recovered, and its signatures would no longer verify)."""
    signing, _ = _nacl()
    secret_path = Path(out)
    public_path = Path(str(out) + ".pub")
    for p in (secret_path, public_path):
        if os.path.lexists(p):
            raise EdgeseqError(f"{p} exists: refusing to overwrite a key; choose another --out or remove it yourself")
    if not secret_path.resolve().parent.is_dir():
        raise EdgeseqError(f"key {secret_path}: directory {secret_path.resolve().parent} does not exist")
    sk = signing.SigningKey.generate()
    pk = bytes(sk.verify_key)
    try:
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{SECRET_TAG} {bytes(sk).hex()}\n")
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(f"{PUBLIC_TAG} {pk.hex()}\n")
    except OSError as exc:
        raise EdgeseqError(f"cannot write key {exc.filename}: {exc.strerror}") from None
    return secret_path, public_path


def message(manifest_bytes: bytes, manifest: dict) -> bytes:
    """The bytes that are signed (see the module docstring)."""
    lines = [DOMAIN, b"manifest " + hashlib.sha256(manifest_bytes).hexdigest().encode() + b"\n"]
    for name in sorted(manifest["files"]):
        meta = manifest["files"][name]
        lines.append(f"file {name} {int(meta['bytes'])} {meta['sha256']}\n".encode())
    return b"".join(lines)


def sign(bundle, key_path) -> Path:
    """Check ``bundle`` fully (schema, files, hashes), then write its ``signature.json`` with the
    secret key at ``key_path``; a previous signature is replaced."""
    from . import bundle as B
    from .outputs import write_bytes

    signing, _ = _nacl()
    seed = _read_key(key_path, SECRET_TAG, "secret key")
    st = os.stat(key_path)
    if st.st_mode & 0o077:
        raise EdgeseqError(f"secret key {key_path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                           f"chmod 600 it first")
    sk = signing.SigningKey(seed)
    root, data, manifest = B._read_unsigned(bundle)
    B.verify_files(root, manifest)
    sig = sk.sign(message(data, manifest)).signature
    body = {"format": SIGNATURE_FORMAT, "version": 1, "algorithm": "ed25519",
            "key_id": key_id(bytes(sk.verify_key)), "signature": sig.hex()}
    return write_bytes(root / B.SIGNATURE, (json.dumps(body, indent=2) + "\n").encode(), "signature")


def verify(root: Path, manifest_bytes: bytes, manifest: dict, public: bytes, signature: bytes | None) -> None:
    """Refuse, in one line, a bundle that is unsigned, signed by another key, or altered since."""
    if signature is None:
        raise EdgeseqError(f"bundle {root} is not signed, and --trust accepts only bundles signed by key "
                           f"{key_id(public)} (sign it: edgeseq sign {root} --key KEY)")
    try:
        body = json.loads(signature.decode("utf-8"))
        ok = (isinstance(body, dict) and body.get("format") == SIGNATURE_FORMAT and body.get("version") == 1
              and body.get("algorithm") == "ed25519" and isinstance(body.get("key_id"), str)
              and isinstance(body.get("signature"), str) and len(body["signature"]) == 128)
        sig = bytes.fromhex(body["signature"]) if ok else b""
    except (ValueError, UnicodeDecodeError, RecursionError):
        ok = False
    if not ok:
        raise EdgeseqError(f"bundle {root}: signature.json is not an edgeseq signature")
    if body["key_id"] != key_id(public):
        raise EdgeseqError(f"bundle {root} is signed by key {body['key_id'][:16]}, not by the trusted key "
                           f"{key_id(public)}")
    signing, exceptions = _nacl()
    try:
        signing.VerifyKey(public).verify(message(manifest_bytes, manifest), sig)
    except exceptions.BadSignatureError:
        raise EdgeseqError(f"bundle {root}: its signature does not match its manifest and files "
                           f"(altered after signing)") from None
