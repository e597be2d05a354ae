"""The OpenAPI document: every operation has a summary, every error is problem+json, and
every example is valid for the model it illustrates."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from app.accounts.schemas import Account, AccountList, AccountPatch
from app.audit.schemas import AuditPage
from app.messages.schemas import EmailListItem, EmailPage
from app.send.schemas import SendRequest, SendResponse
from app.settings.schemas import ModuleSettings, ModuleSettingsPatch
from app.sync.schemas import SyncRequested, SyncStatus

MODELS: dict[str, Any] = {
    "Account": Account,
    "AccountList": AccountList,
    "AccountPatch": AccountPatch,
    "SyncStatus": SyncStatus,
    "SyncRequested": SyncRequested,
    "EmailListItem": EmailListItem,
    "EmailPage": EmailPage,
    "SendRequest": SendRequest,
    "SendResponse": SendResponse,
    "ModuleSettings": ModuleSettings,
    "ModuleSettingsPatch": ModuleSettingsPatch,
    "AuditPage": AuditPage,
}


def test_operations_are_documented(app: FastAPI) -> None:
    schema = app.openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            for code, response in operation["responses"].items():
                if code[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        code,
                    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_examples_are_valid(app: FastAPI, name: str) -> None:
    component = app.openapi()["components"]["schemas"][name]
    assert component.get("examples"), name
    for example in component["examples"]:
        MODELS[name].model_validate(example)
