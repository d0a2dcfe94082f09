"""Glue for `policy.documents`: Synapse's media-repository callbacks (per-role upload size and
quota, shown to clients in `/media/config`) and the spam checker's look at each uploaded file.

Synapse answers a refused size with 413 `M_TOO_LARGE` and a spent quota with 403
`M_USER_LIMIT_EXCEEDED`; a refused file with 400 "Bad content" (it drops the module's own
code there, so the reason is in the log). Messages that declare a program are refused by the
Gatekeeper with `ru.sferum.file_type_refused`.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import NOT_SPAM, MediaUploadLimit, ModuleApi
from synapse.module_api.errors import Codes

from synapse_sferum.config import MediaConfig
from synapse_sferum.policy import documents
from synapse_sferum.service import DirectoryService

logger = logging.getLogger(__name__)


class UploadRules:
    def __init__(self, api: ModuleApi, directory: DirectoryService, config: MediaConfig):
        self._api = api
        self._directory = directory
        self._config = config

    def register(self) -> None:
        self._api.register_media_repository_callbacks(
            get_media_config_for_user=self.media_config,
            is_user_allowed_to_upload_media_of_size=self.may_upload_size,
            get_media_upload_limits_for_user=self.upload_limits,
        )
        self._api.register_spam_checker_callbacks(check_media_file_for_spam=self.check_file)

    async def _limit(self, user_id: str) -> int | None:
        member = await self._directory.get_member(user_id)
        return documents.upload_limit(member, self._config.upload_mib)

    async def media_config(self, user_id: str) -> dict[str, Any] | None:
        """What `/media/config` tells the person's client: their own largest upload."""
        limit = await self._limit(user_id)
        return None if limit is None else {"m.upload.size": limit}

    async def may_upload_size(self, user_id: str, size: int) -> bool:
        try:
            limit = await self._limit(user_id)
        except Exception:
            logger.exception("synapse_sferum: upload limit of %s unknown; refusing", user_id)
            return False
        return limit is None or size <= limit

    async def upload_limits(self, user_id: str) -> list[MediaUploadLimit] | None:
        member = await self._directory.get_member(user_id)
        quota = documents.upload_quota(member, self._config.quota_mib, self._config.quota_days)
        if quota is None:
            return None
        return [MediaUploadLimit(max_bytes=quota.max_bytes, time_period_ms=quota.period_ms)]

    async def check_file(self, file_wrapper: Any, file_info: Any) -> Any:
        """Programs and scripts are refused, whatever name or type the upload claims."""
        head = bytearray()

        def keep_head(chunk: bytes) -> None:
            if len(head) < documents.SIGNATURE_BYTES:
                head.extend(chunk[: documents.SIGNATURE_BYTES - len(head)])

        try:
            await file_wrapper.write_chunks_to(keep_head)
            kind = documents.program_kind(bytes(head))
        except Exception:
            logger.exception("synapse_sferum: could not look at an upload; refusing")
            return Codes.FORBIDDEN
        if kind is not None:
            logger.info("synapse_sferum: refused an upload: it is %s", kind)
            return Codes.FORBIDDEN
        return NOT_SPAM
