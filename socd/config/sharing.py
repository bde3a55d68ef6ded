"""The ``sharing:`` config section: who we are and where layer-4 exchanges go.

Nothing about the recipients is built in (the national recipients changed in
2025): every endpoint, credential and recipient name comes from this section.
Secrets are :class:`~pydantic.SecretStr` and normally written as ``${VAR}`` (the
config loader substitutes environment variables), so they never reach a log.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from socd.config.models import StrictModel

Tlp = Literal["clear", "white", "green", "amber", "amber+strict", "red"]


class OrganisationConfig(StrictModel):
    """Our SOC as it appears in exports (the STIX ``identity``, the MISP ``Orgc``)."""

    name: str = Field("SOC", min_length=1, description="The SOC's name as recipients know it, "
                      "e.g. `Trung tâm Giám sát an toàn không gian mạng tỉnh X`.")
    organisation: str = Field("", description="The body the SOC belongs to (e.g. `Sở Khoa học "
                              "và Công nghệ tỉnh X`); written in the identity's description.")
    contact: str = Field("", description="Contact information (e-mail, phone) for recipients.")
    sectors: list[str] = Field(default_factory=lambda: ["government"], description="STIX "
                               "industry-sector-ov values of the identity.")


class MispExportConfig(StrictModel):
    """Defaults of the MISP event JSON (a push target may override them)."""

    distribution: int = Field(1, ge=0, le=4, description="MISP distribution: 0 your "
                              "organisation only, 1 this community only, 2 connected "
                              "communities, 3 all communities, 4 a sharing group.")
    sharing_group_id: int | None = Field(None, ge=1, description="The sharing group "
                                         "(distribution 4).")
    analysis: int = Field(2, ge=0, le=2, description="MISP analysis: 0 initial, 1 ongoing, "
                          "2 completed.")
    publish: bool = Field(False, description="Ask MISP to publish the event on creation.")

    @model_validator(mode="after")
    def _group(self) -> MispExportConfig:
        if self.distribution == 4 and self.sharing_group_id is None:
            raise ValueError("distribution 4 (sharing group) needs sharing_group_id")
        return self


class _TargetBase(StrictModel):
    url: str = Field(description="Base URL (TAXII: the API root; MISP: the instance).")
    recipient: str = Field("", description="The recipient organisation, as written in the "
                           "exchange log and the reports (e.g. `NCSC - Cục An toàn thông tin`).")
    verify: bool = Field(True, description="Verify the server's TLS certificate.")
    ca_file: str | None = Field(None, description="CA bundle (PEM) for the server's "
                                "certificate, relative to the config file's folder.")
    timeout_secs: float = Field(60.0, gt=0, le=3600, description="Timeout of one push, "
                                "including waiting for the server to finish (TAXII status).")


class TaxiiTargetConfig(_TargetBase):
    """A TAXII 2.1 collection we may write to."""

    type: Literal["taxii"]
    collection_id: str = Field(min_length=1, description="The collection's id under the API "
                               "root (must have can_write).")
    username: str | None = Field(None, description="HTTP Basic user name.")
    password: SecretStr | None = Field(None, description="HTTP Basic password (`${VAR}`).")
    token: SecretStr | None = Field(None, description="API token instead of Basic auth "
                                    "(`${VAR}`), sent as `Authorization: <token_scheme> "
                                    "<token>`.")
    token_scheme: str = Field("Bearer", description="Scheme word before the token.")
    poll_interval_secs: float = Field(1.0, gt=0, le=60,
                                      description="How often the TAXII status is polled.")

    @model_validator(mode="after")
    def _auth(self) -> TaxiiTargetConfig:
        if self.token is not None and self.username is not None:
            raise ValueError("give either username/password or token, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class MispTargetConfig(_TargetBase):
    """A MISP instance: events are created with ``POST <url>/events/add``."""

    type: Literal["misp"]
    api_key: SecretStr = Field(description="The MISP automation key (`${VAR}`), sent as the "
                               "`Authorization` header.")
    distribution: int | None = Field(None, ge=0, le=4, description="Overrides "
                                     "sharing.misp.distribution for this target.")
    sharing_group_id: int | None = Field(None, ge=1, description="Overrides "
                                         "sharing.misp.sharing_group_id for this target.")


TargetConfig = Annotated[TaxiiTargetConfig | MispTargetConfig, Field(discriminator="type")]


class SharingConfig(StrictModel):
    """Layer-4 sharing with the national monitoring centre (docs/sharing.md)."""

    organisation: OrganisationConfig = OrganisationConfig()
    tlp: Tlp = Field("amber", description="Traffic Light Protocol of every export. STIX "
                     "uses the stix2 library's TLP 1.0 marking definitions (clear = white, "
                     "amber+strict = amber); MISP gets the TLP 2.0 tag (tlp:clear, "
                     "tlp:amber+strict...).")
    misp: MispExportConfig = MispExportConfig()
    targets: dict[str, TargetConfig] = Field(
        default_factory=dict, description="Push targets by name (`socd share push --target "
        "NAME`): `type: taxii` (url = API root, collection_id, username/password or token, "
        "ca_file, verify, recipient) or `type: misp` (url, api_key, distribution, "
        "sharing_group_id, ca_file, verify, recipient); see docs/sharing.md.")
    db_path: str = Field("sharing.db", description="The exchange log (SQLite), relative to "
                         "state_dir.")
