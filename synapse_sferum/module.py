"""The Synapse module: wires config, storage, rules, provisioning and the admin API together."""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from sferum_shared import Clock
from sferum_shared.config import ConfigError as SferumConfigError
from synapse_sferum import compat
from synapse_sferum.access import Gatekeeper
from synapse_sferum.accounts import AccountIssuer
from synapse_sferum.admin_api import AdminApi
from synapse_sferum.articles import Articles
from synapse_sferum.compat import EventCallback
from synapse_sferum.config import SferumConfig, parse_config
from synapse_sferum.documents import UploadRules
from synapse_sferum.invites import TeacherInvites
from synapse_sferum.join import JoinPage
from synapse_sferum.lifecycle import Departures
from synapse_sferum.media import MediaGate
from synapse_sferum.mirror import SchoolNewsMirror
from synapse_sferum.msisdn_delegate import MsisdnDelegate
from synapse_sferum.personal import PersonalData
from synapse_sferum.polls import PollCounter
from synapse_sferum.provisioner import Provisioner
from synapse_sferum.quiet_hours import QuietHours
from synapse_sferum.registration import Registrar
from synapse_sferum.reports import ReportRelay
from synapse_sferum.service import DirectoryService
from synapse_sferum.sso import register_module
from synapse_sferum.stickers import StickerPacks
from synapse_sferum.support import SupportContacts
from synapse_sferum.upgrades import RoomUpgrades

STARTUP_RECONCILE_DELAY_MS = 5_000


def synapse_clock(api: ModuleApi) -> Clock:
    """Synapse's own clock: registration tokens expire by it, so link codes must too."""
    return Clock(lambda: api.get_current_time_msec() / 1000)


class SferumModule:
    def __init__(self, config: SferumConfig, api: ModuleApi):
        self._api = api
        self._config = config

        clock = synapse_clock(api)
        self.directory = DirectoryService(api, config, clock)
        self.gatekeeper = Gatekeeper(api, config, self.directory)
        bot = self.gatekeeper.bot_user_id
        media = MediaGate(api, self.directory, bot)
        self.gatekeeper.register(media.noting)
        media.register()
        departures = Departures(
            api, self.directory, clock, config.provisioning.deactivate_after_hours
        )
        self.provisioner = Provisioner(
            api,
            self.directory,
            bot,
            config.partner_servers,
            clock,
            departures,
            config.calls.public_url,
            config.provisioning.rooms_at_once,
        )
        api.register_ratelimit_callbacks(
            get_ratelimit_override_for_user=self.provisioner.ratelimit_override
        )
        UploadRules(api, self.directory, config.media).register()
        upgrades = RoomUpgrades(api, self.directory, bot, self.provisioner.request)
        upgrades.register()
        self.mirror = SchoolNewsMirror(api, self.directory, bot)
        compat.register_event_callbacks(api, on_new_event=EventCallback(self.mirror.on_new_event))
        self.polls = PollCounter(api, self.directory, bot)
        compat.register_event_callbacks(api, on_new_event=EventCallback(self.polls.on_new_event))
        ReportRelay(api, self.directory, bot, config.reports).register()
        self.quiet_hours = QuietHours(api, self.directory, bot, config.quiet_hours, clock)
        self.quiet_hours.register()
        issuer = AccountIssuer(api, config, self.directory, clock)
        issuer.register()
        self.registrar = Registrar(api, config, self.directory, clock, self.provisioner.request)
        self.registrar.register()
        MsisdnDelegate(api, config, self.directory, clock).register()
        invites = TeacherInvites(
            api, self.directory, self.registrar, bot, config.link_codes.expiry_days, clock
        )
        invites.register()
        JoinPage(
            api,
            self.directory,
            self.registrar,
            clock,
            config.rules.min_account_age_years,
            invites.issue_from_page,
        ).register()
        sticker_packs = StickerPacks(api, self.directory, bot)
        personal = PersonalData(api, self.directory, self.provisioner)
        self.admin_api = AdminApi(
            api,
            self.directory,
            self.provisioner,
            issuer,
            self.registrar,
            sticker_packs,
            personal,
            upgrades,
            Articles(api, self.directory),
            config.admin_api_secret,
        )
        self.admin_api.register()
        SupportContacts(api, config.support).register()
        if config.provisioning.enabled:
            if api.should_run_background_tasks():
                # Catch up at start-up with whatever changed while the server was down.
                api.delayed_background_call(STARTUP_RECONCILE_DELAY_MS, self.provisioner.request)
            api.looping_background_call(
                self.provisioner.request,
                config.provisioning.reconcile_interval_seconds * 1000,
                desc="sferum_reconcile",
            )
            # People who joined a space since: their clients offer its packs too.
            api.looping_background_call(
                sticker_packs.sync_members,
                config.provisioning.reconcile_interval_seconds * 1000,
                desc="sferum_sticker_packs",
            )
        register_module(api.server_name, self)  # for SferumOidcMappingProvider

    @staticmethod
    def parse_config(config: dict[str, Any]) -> SferumConfig:
        try:
            return parse_config(config)
        except SferumConfigError as e:
            raise ConfigError(str(e), (e.key,)) from e
