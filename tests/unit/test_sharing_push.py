"""Push-side pieces without a server: target config checks and the token header
(real pushes: tests/integration/test_sharing_taxii.py and test_sharing_misp.py)."""

from __future__ import annotations

import pytest
import requests
from pydantic import ValidationError

from socd.config.sharing import SharingConfig
from socd.sharing.push import _TokenAuth


def test_target_config_checks() -> None:
    base = {"type": "taxii", "url": "https://t/api/", "collection_id": "c"}
    with pytest.raises(ValidationError, match="go together"):
        SharingConfig.model_validate({"targets": {"t": {**base, "username": "u"}}})
    with pytest.raises(ValidationError, match="not both"):
        SharingConfig.model_validate({"targets": {"t": {**base, "username": "u",
                                                         "password": "p", "token": "x"}}})
    with pytest.raises(ValidationError, match="api_key"):
        SharingConfig.model_validate({"targets": {"m": {"type": "misp", "url": "https://m"}}})
    with pytest.raises(ValidationError):
        SharingConfig.model_validate({"targets": {"x": {"type": "ftp", "url": "x"}}})
    cfg = SharingConfig.model_validate({"targets": {"t": {**base, "token": "abc"}}})
    assert "abc" not in repr(cfg)  # secrets never printed


def test_token_header() -> None:
    request = requests.Request("GET", "https://t/api/").prepare()
    _TokenAuth("Bearer", "abc")(request)
    assert request.headers["Authorization"] == "Bearer abc"
    _TokenAuth("", "raw-key")(request)
    assert request.headers["Authorization"] == "raw-key"
