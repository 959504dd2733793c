"""The public surface: ``__all__`` pinned, docstrings, ``__module__``, lazy imports, pickling."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import textwrap

import pytest

import dataserve
import dataserve.codecs

DATASERVE_ALL = [
    "AsyncHTTPDataClient",
    "BadRequest",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "DataServeError",
    "DecodeError",
    "EncodeError",
    "HTTPDataClient",
    "HTTPDataHandler",
    "HTTPDataServer",
    "LengthRequired",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "ReadTimeout",
    "RemoteError",
    "RequestTimeout",
    "ResourceNotFound",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "WriteTimeout",
    "route",
    "run_http_server",
]

CODECS_ALL = [
    "BytesCodec",
    "Codec",
    "CodecRegistry",
    "JsonCodec",
    "MsgpackCodec",
    "TextCodec",
    "default_registry",
    "register",
]

# SPEC section 8: every public name of sections 2 to 11 is importable from ``dataserve``.
SPEC_NAMES = [
    "AsyncHTTPDataClient",
    "DataServeError",
    "DecodeError",
    "EncodeError",
    "HTTPDataClient",
    "HTTPDataHandler",
    "HTTPDataServer",
    "RemoteError",
    "ResourceNotFound",
    "ServerError",
    "TransportError",
    "route",
    "run_http_server",
]
SPEC_CODEC_NAMES = ["Codec", "CodecRegistry", "MsgpackCodec", "register"]


def _public(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    return [(name, getattr(module, name)) for name in module.__all__]


def test_dataserve_all_is_pinned() -> None:
    assert dataserve.__all__ == DATASERVE_ALL


def test_codecs_all_is_pinned() -> None:
    assert dataserve.codecs.__all__ == CODECS_ALL


@pytest.mark.parametrize("module_name", ["dataserve", "dataserve.codecs"])
def test_all_is_sorted_without_duplicates(module_name: str) -> None:
    names = importlib.import_module(module_name).__all__
    assert names == sorted(set(names))


def test_spec_public_names_are_exported_from_dataserve() -> None:
    missing = [name for name in SPEC_NAMES if name not in dataserve.__all__]
    assert missing == []


def test_spec_codec_names_are_exported_from_dataserve_codecs() -> None:
    missing = [name for name in SPEC_CODEC_NAMES if name not in dataserve.codecs.__all__]
    assert missing == []


@pytest.mark.parametrize("name", DATASERVE_ALL)
def test_dataserve_name_is_importable_with_docstring(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from dataserve import {name}", namespace)
    obj = namespace[name]
    assert obj is getattr(dataserve, name)
    assert (obj.__doc__ or "").strip(), f"dataserve.{name} has no docstring"


@pytest.mark.parametrize("name", CODECS_ALL)
def test_codecs_name_is_importable_with_docstring(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from dataserve.codecs import {name}", namespace)
    obj = namespace[name]
    assert obj is getattr(dataserve.codecs, name)
    assert (obj.__doc__ or "").strip(), f"dataserve.codecs.{name} has no docstring"


@pytest.mark.parametrize("module_name", ["dataserve", "dataserve.codecs"])
def test_reexported_classes_name_their_public_module(module_name: str) -> None:
    wrong = {
        name: obj.__module__
        for name, obj in _public(module_name)
        if isinstance(obj, type) and obj.__module__ != module_name
    }
    assert wrong == {}


def test_unknown_attribute_raises_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="'NoSuchName'"):
        _ = dataserve.NoSuchName


def _fresh_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.strip()


def test_import_dataserve_in_fresh_process_leaves_server_and_numpy_unloaded() -> None:
    out = _fresh_python(
        """
        import sys
        import dataserve, dataserve.codecs
        heavy = ("numpy", "http.server", "dataserve._server", "asyncio", "dataserve._aclient")
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    assert out == "[]"


def test_server_attribute_in_fresh_process_loads_server_module() -> None:
    out = _fresh_python(
        """
        import sys
        import dataserve
        server = dataserve.HTTPDataServer
        run = dataserve.run_http_server
        print("dataserve._server" in sys.modules, server.__module__, callable(run))
        """
    )
    assert out == "True dataserve True"


def test_async_client_attribute_in_fresh_process_loads_its_module() -> None:
    out = _fresh_python(
        """
        import sys
        import dataserve
        client = dataserve.AsyncHTTPDataClient
        print("dataserve._aclient" in sys.modules, client.__module__)
        """
    )
    assert out == "True dataserve"


def test_from_import_of_server_in_fresh_process_works() -> None:
    out = _fresh_python(
        """
        from dataserve import HTTPDataServer, run_http_server
        print(HTTPDataServer.__name__, run_http_server.__name__)
        """
    )
    assert out == "HTTPDataServer run_http_server"


# -- pickling ------------------------------------------------------------------------------

_ATTRIBUTES = ("status", "detail", "url", "exception_type", "message")


def _exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for _, obj in _public("dataserve")
        if isinstance(obj, type) and issubclass(obj, BaseException)
    ]


def _example(cls: type[BaseException]) -> BaseException:
    if issubclass(cls, dataserve.RemoteError):
        return cls(
            "PUT http://h:1/x answered 500", 500, "ValueError: boom", "http://h:1/x", "ValueError"
        )
    if issubclass(cls, dataserve.ServerError):
        status = cls.status_code or 418
        return cls(f"PUT http://h:1/x answered {status}", status, "the detail", "http://h:1/x")
    if issubclass(cls, dataserve.TransportError):
        return cls("Could not connect to http://h:1/x", "http://h:1/x")
    return cls("something went wrong with 'x'")


def test_every_exception_class_is_covered() -> None:
    names = {cls.__name__ for cls in _exception_classes()}
    assert len(names) == 20
    assert {"DataServeError", "ServerError", "RemoteError", "TransportError"} <= names


@pytest.mark.parametrize("cls", _exception_classes(), ids=lambda cls: cls.__name__)
def test_exception_pickles_with_same_attributes(cls: type[BaseException]) -> None:
    error = _example(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert copy.args == error.args
    assert str(copy) == str(error)
    for attribute in _ATTRIBUTES:
        assert getattr(copy, attribute, None) == getattr(error, attribute, None), attribute
    assert isinstance(copy, dataserve.DataServeError)


def test_remote_error_pickles_exception_type() -> None:
    error = dataserve.RemoteError("m", 500, "d", "http://h:1/x", "KeyError")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.detail, copy.url, copy.exception_type, copy.message) == (
        500,
        "d",
        "http://h:1/x",
        "KeyError",
        "m",
    )


def test_server_error_subclass_pickles_its_status() -> None:
    error = dataserve.ResourceNotFound("m", 404, "the handler returned None", "http://h:1/y")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, dataserve.ServerError)
    assert (copy.status, copy.detail, copy.url) == (
        404,
        "the handler returned None",
        "http://h:1/y",
    )


def test_wsgi_make_app_is_public_with_docstring() -> None:
    import dataserve.wsgi

    assert dataserve.wsgi.__all__ == ["make_app"]
    assert (dataserve.wsgi.make_app.__doc__ or "").strip()


def test_numpy_codec_module_exports_only_the_codec() -> None:
    import dataserve.codecs.numpy

    assert dataserve.codecs.numpy.__all__ == ["NumpyCodec"]
    assert (dataserve.codecs.numpy.NumpyCodec.__doc__ or "").strip()
