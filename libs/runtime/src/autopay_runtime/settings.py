"""Settings every service has; each service subclasses it with its own fields."""

from pydantic_settings import BaseSettings, SettingsConfigDict

from autopay_contracts import Namespace


class ServiceSettings(BaseSettings):
    """Read from `AUTOPAY_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="AUTOPAY_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "autopay"
    redis_prefix: str = "ap"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def ns(self) -> Namespace:
        return Namespace(self.namespace)
