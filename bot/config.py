"""Settings from the environment and a `.env` file (pydantic-settings)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.contract.callback_target import AllowList


def _hour_minute(text: str) -> tuple[int, int]:
    hour, minute = text.split(":")
    return int(hour), int(minute)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    database_url: str = Field(
        default="sqlite+aiosqlite:///countersign.db", validation_alias="DATABASE_URL"
    )
    policy_path: str | None = Field(default=None, validation_alias="COUNTERSIGN_POLICY")
    host: str = Field(default="0.0.0.0", validation_alias="COUNTERSIGN_HOST")
    port: int = Field(default=3000, ge=0, le=65535, validation_alias="COUNTERSIGN_PORT")
    public_url: str | None = Field(default=None, validation_alias="COUNTERSIGN_PUBLIC_URL")
    log_format: str = Field(default="text", pattern="^(text|json)$",
                            validation_alias="COUNTERSIGN_LOG_FORMAT")
    log_level: str = Field(default="INFO", validation_alias="COUNTERSIGN_LOG_LEVEL")
    # How often the escalation sweeper and outbox relay look for due work.
    tick_seconds: float = Field(default=0.5, gt=0, validation_alias="COUNTERSIGN_TICK_SECONDS")
    digest_time: str = Field(
        default="09:00", pattern=r"^\d{2}:\d{2}$", validation_alias="COUNTERSIGN_DIGEST_TIME"
    )
    digest_timezone: str = Field(default="UTC", validation_alias="COUNTERSIGN_DIGEST_TIMEZONE")
    # The one workspace whose requests are accepted (learned from auth.test at start when unset).
    slack_team_id: str | None = Field(default=None, validation_alias="SLACK_TEAM_ID")
    # CIDRs or host names a callback_url may reach besides public addresses (comma-separated).
    callback_allow: str = Field(default="", validation_alias="COUNTERSIGN_CALLBACK_ALLOW")

    @field_validator("callback_allow")
    @classmethod
    def _allow_list(cls, text: str) -> str:
        AllowList.parse(text)  # a typo is named at start, not discovered when a callback is refused
        return text

    @field_validator("digest_time")
    @classmethod
    def _clock_time(cls, text: str) -> str:
        # The pattern lets 25:99 through; the scheduler would then die at start with a traceback.
        hour, minute = _hour_minute(text)
        if hour > 23 or minute > 59:
            raise ValueError("a time of day as HH:MM, 00:00 to 23:59")
        return text

    @property
    def digest_clock(self) -> tuple[int, int]:
        """COUNTERSIGN_DIGEST_TIME as (hour, minute), in COUNTERSIGN_DIGEST_TIMEZONE."""
        return _hour_minute(self.digest_time)

    @field_validator("digest_timezone")
    @classmethod
    def _time_zone(cls, name: str) -> str:
        # Checked here so a typo is named at start (ZoneInfo raised a traceback from the scheduler).
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("an IANA time zone name such as UTC or Europe/Paris") from exc
        return name

    @property
    def callback_allow_list(self) -> AllowList:
        return AllowList.parse(self.callback_allow)
    # Signs the web pages' links (handlers.web.links); unset: derived from SLACK_SIGNING_SECRET.
    link_secret: SecretStr | None = Field(default=None, validation_alias="COUNTERSIGN_LINK_SECRET")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """Accept the usual spellings and pick the async driver; refuse anything else clearly."""
        for plain, driver in (("postgres://", "postgresql+asyncpg://"), ("postgresql://", "postgresql+asyncpg://"),
                              ("sqlite://", "sqlite+aiosqlite://")):
            if url.startswith(plain):
                url = driver + url[len(plain):]
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:pass@host/db")
        return url

    @property
    def api_url(self) -> str:
        return self.slack_api_url if self.slack_api_url.endswith("/") else self.slack_api_url + "/"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://127.0.0.1:{self.port}").rstrip("/")

    def require_slack(self) -> None:
        """`serve` needs the bot token and (in HTTP mode) the signing secret."""
        missing = [
            name
            for name, value in (
                ("SLACK_BOT_TOKEN", self.slack_bot_token),
                ("SLACK_SIGNING_SECRET", self.slack_signing_secret if not self.slack_app_token else "x"),
            )
            if not value
        ]
        if missing:
            raise SettingsError(f"missing setting(s): {', '.join(missing)} (environment or .env file)")


class SettingsError(RuntimeError):
    pass


def _problem(err: Any) -> str:
    name = str(err["loc"][0]) if err["loc"] else "?"
    message = err["msg"].removeprefix("Value error, ")
    shown = "" if "TOKEN" in name or "SECRET" in name else f" (got {err.get('input')!r})"
    return f"{name}: {message}{shown}"


def load_settings(**overrides: object) -> Settings:
    """Read settings; any invalid value is reported by its environment variable name."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise SettingsError(f"invalid setting(s): {problems}") from exc
