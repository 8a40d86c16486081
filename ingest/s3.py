"""One way to reach an S3-compatible server, for Arrow and for DuckDB.

The lake and a `files` source reading an S3 prefix share `S3Connection` (millpond.core.config).
Arrow gets an `S3FileSystem`; DuckDB gets the statement of a temporary (in-memory) secret, so
a DuckDB warehouse can read `s3://` Parquet through httpfs. Addressing is path-style whenever
an endpoint is set: MinIO and other self-hosted servers need it, and AWS accepts it.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from millpond.core.config import S3Connection


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix/` -> ("bucket", "prefix")."""
    rest = url.removeprefix("s3://").strip("/")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


def filesystem(conn: S3Connection) -> pafs.S3FileSystem:
    """An Arrow filesystem for the server (credentials from the config, else AWS defaults)."""
    options: dict[str, Any] = {"region": conn.region or "us-east-1"}
    if conn.endpoint_url:
        parts = urlsplit(conn.endpoint_url)
        options |= {
            "endpoint_override": parts.netloc,
            "scheme": parts.scheme,
            "force_virtual_addressing": False,
        }
    if conn.access_key_id and conn.secret_access_key:
        options |= {"access_key": conn.access_key_id, "secret_key": conn.secret_access_key}
    return pafs.S3FileSystem(**options)


def duckdb_secret_options(conn: S3Connection) -> dict[str, str]:
    """The options of a DuckDB S3 secret for this server, credentials included (values only
    for statements run in memory, never for files: see `millpond.targets.duckdb.s3`)."""
    options: dict[str, str] = {"region": conn.region or "us-east-1"}
    if conn.endpoint_url:
        parts = urlsplit(conn.endpoint_url)
        options |= {
            "endpoint": parts.netloc,
            "url_style": "path",
            "use_ssl": "true" if parts.scheme == "https" else "false",
        }
    if conn.access_key_id and conn.secret_access_key:
        options |= {"key_id": conn.access_key_id, "secret": conn.secret_access_key}
    return options


def create_secret_sql(name: str, options: dict[str, str], scope: str | None = None) -> str:
    """`CREATE OR REPLACE TEMPORARY SECRET`: lives in the connection's memory only."""
    pairs = [f"{key} {_literal(value)}" for key, value in options.items()]
    if scope:
        pairs.append(f"scope {_literal(scope)}")
    return f"create or replace temporary secret {name} (type s3, {', '.join(pairs)})"


def _literal(text: str) -> str:
    if text in ("true", "false"):
        return text
    return "'" + text.replace("'", "''") + "'"


# --- errors a user can act on ---------------------------------------------------------------
# pyarrow's S3 errors name the AWS operation and a curl code, never the millpond.yml key to
# change. `check_bucket` asks the server once when a lake (or an S3 inbox) is opened, and
# `explain` turns what goes wrong into a message naming the key: `<setting>.url`,
# `<setting>.endpoint_url`, the credentials (`<setting>` is `lake`, or a source's `s3`).

# What a bucket name may be (S3's rules, simplified: 3-63 of a-z, 0-9, '.', '-').
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3Error(OSError):
    """An S3 server, bucket or credentials millpond cannot use, said in millpond.yml's terms.
    An OSError, as pyarrow's own errors are, so callers that handle I/O errors still do.
    `retryable` is False when only a change of settings helps (orchestrators do not retry)."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable

    def __str__(self) -> str:
        return str(self.args[0])


def check_url(url: str, setting: str = "lake", url_key: str | None = None) -> tuple[str, str]:
    """The bucket and prefix of an `s3://` URL, or S3Error when it names no valid bucket.
    `url_key` is the key the URL is written under (default `<setting>.url`)."""
    url_key = url_key or f"{setting}.url"
    bucket, prefix = split_url(url)
    if not bucket or url.removeprefix("s3://").startswith("/"):
        raise S3Error(
            f"{url_key} {url!r} names no bucket: write s3://<bucket>/<prefix>, "
            "e.g. s3://millpond/lake"
        )
    if not _BUCKET.match(bucket):
        raise S3Error(
            f"{url_key} {url!r}: {bucket!r} is not a valid S3 bucket name (3-63 characters "
            "of a-z, 0-9, '.' and '-'): fix the bucket in the url"
        )
    return bucket, prefix


def check_bucket(
    fs: pafs.FileSystem,
    conn: S3Connection,
    url: str,
    setting: str = "lake",
    url_key: str | None = None,
) -> None:
    """Ask the server for the bucket once, so a wrong address, credentials or bucket name is
    one message naming the key to change, before anything is read or written. `setting` is
    where the connection's keys are written (`lake`, `sources.<name>.s3`), `url_key` the key
    of the URL (default `<setting>.url`)."""
    bucket, prefix = check_url(url, setting, url_key)
    check_settings(conn, setting, url_key)
    if conn.endpoint_url and not _speaks_s3(conn.endpoint_url, bucket):
        raise S3Error(
            f"the server at {conn.endpoint_url} ({setting}.endpoint_url) does not answer as an "
            "S3 server does: set the address of the S3 API (MinIO's is port 9000, not its "
            "console)"
        )
    try:
        info = fs.get_file_info(bucket)
    except OSError as exc:
        if "ACCESS_DENIED" not in str(exc):
            raise S3Error(explain(exc, conn, url, setting, url_key), unreachable(exc)) from exc
        # Asking for the bucket needs s3:ListBucket on all of it, which a lake's credentials
        # may lack; listing the lake's own prefix tells wrong credentials from that.
        try:
            fs.get_file_info(pafs.FileSelector(f"{bucket}/{prefix}".rstrip("/"), True))
        except OSError as listing:
            raise S3Error(
                explain(listing, conn, url, setting, url_key), unreachable(listing)
            ) from listing
        return
    if info.type == pafs.FileType.NotFound:
        raise S3Error(
            f"bucket {bucket!r} does not exist on {_server(conn, setting)}: create it "
            f"(MinIO: `mc mb <alias>/{bucket}`), or fix the bucket in "
            f"{url_key or setting + '.url'} ({url})"
        )


def check_settings(conn: S3Connection, setting: str = "lake", url_key: str | None = None) -> None:
    """Settings that would silently be something else: half the credentials (the other half
    would come from the AWS_* variables), an empty one (a `${VAR}` set to nothing), a path in
    the endpoint (ignored: the bucket belongs in the url)."""
    keys = {"access_key_id": conn.access_key_id, "secret_access_key": conn.secret_access_key}
    for key, value in keys.items():
        if value is not None and not value.strip():
            raise S3Error(
                f"{setting}.{key} is empty: the ${{VAR}} it names is set to nothing; set the "
                f"variable, or remove {setting}.{key} to use the AWS_* variables"
            )
    given = [k for k, v in keys.items() if v]
    if len(given) == 1:
        other = next(k for k in keys if k not in given)
        raise S3Error(
            f"{setting}.{given[0]} is set but {setting}.{other} is not: set both (or neither, "
            "to use the AWS_* variables)"
        )
    if conn.endpoint_url and urlsplit(conn.endpoint_url).path.strip("/"):
        raise S3Error(
            f"{setting}.endpoint_url {conn.endpoint_url!r} has a path: give the server's "
            f"address only (e.g. http://minio:9000); the bucket and prefix belong in "
            f"{url_key or setting + '.url'}"
        )


def explain(
    exc: BaseException,
    conn: S3Connection,
    url: str,
    setting: str = "lake",
    url_key: str | None = None,
) -> str:
    """What went wrong with S3, naming the key to change, and pyarrow's own words after it."""
    url_key = url_key or f"{setting}.url"
    text = str(exc)
    server = _server(conn, setting)
    if "curlCode: 35" in text or "SSL" in text:
        why = (
            f"no TLS connection to {server}: if the server speaks plain HTTP, write http:// "
            f"in {setting}.endpoint_url"
        )
    elif "NETWORK_CONNECTION" in text or "curlCode" in text:
        why = (
            f"cannot connect to {server}: nothing answers there. Start the server, or fix the "
            f"address in {setting}.endpoint_url"
        )
    elif re.search(r"ACCESS_DENIED|INVALID_ACCESS_KEY|SIGNATURE|HTTP status 403|Forbidden", text):
        why = f"{server} refused the credentials for {url}: {_credentials(conn, setting)}"
    elif "NO_SUCH_BUCKET" in text:
        bucket, _ = split_url(url)
        why = (
            f"bucket {bucket!r} does not exist on {server}: create it, or fix the bucket in "
            f"{url_key} ({url})"
        )
    else:
        why = (
            f"{server} failed for {url}: check {setting}.endpoint_url, {setting}.region and "
            f"the credentials ({_credentials(conn, setting)})"
        )
    return f"{why} ({_detail(text)})"


def unreachable(exc: BaseException) -> bool:
    """Whether the server could not be reached at all (worth a retry: it may be restarting)."""
    text = str(exc)
    return "NETWORK_CONNECTION" in text and "curlCode: 35" not in text


def _server(conn: S3Connection, setting: str) -> str:
    if conn.endpoint_url:
        return f"the S3 server at {conn.endpoint_url} ({setting}.endpoint_url)"
    return f"AWS S3 (no {setting}.endpoint_url set; set it for MinIO or another S3 server)"


def _credentials(conn: S3Connection, setting: str) -> str:
    if conn.access_key_id or conn.secret_access_key:
        return (
            f"check {setting}.access_key_id and {setting}.secret_access_key (usually ${{VAR}} "
            "references in millpond.yml: the variables they name must hold the server's keys)"
        )
    return (
        f"{setting}.access_key_id and {setting}.secret_access_key are not set, so the "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables (or ~/.aws) are "
        "used: set those, or the two keys"
    )


def _detail(text: str) -> str:
    """pyarrow's message without its request id, on one line."""
    text = re.sub(r"\s*\(Request ID: [^)]*\)", "", text)
    return " ".join(text.split())[:300]


def _speaks_s3(endpoint: str, bucket: str) -> bool:
    """False only when the server surely is not S3: it answers a bucket listing without S3's
    XML. Anything inconclusive (no answer, a server error, TLS trouble) is left to pyarrow."""
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/{bucket}?list-type=2&max-keys=0")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read(512)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(512)
    except (OSError, ValueError):
        return True
    if status >= 500:
        return True
    return body.lstrip().startswith(b"<?xml") or b"<ListBucketResult" in body or b"<Error" in body
