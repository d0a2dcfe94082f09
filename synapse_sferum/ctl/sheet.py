"""`sferumctl accounts sheet`: printable onboarding cards for school-issued accounts
(docs/identity.md).

Pupils too young for a phone get their account on paper: one card per account with the
person's name and class, the school server's URL, the user ID, the one-time password and a QR
code that a phone's camera opens as a link to this server's sign-in help (`/join#<user ID>`:
the address, the login and how to sign in with Element X, FluffyChat or Element). Teachers'
and staff's cards come on a sheet of their own, after the families'. Rendering is pure
(accounts and URL in, an HTML string out); `write_sheet` does the I/O.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import jinja2
import markupsafe
import qrcode
import qrcode.constants
import qrcode.image.svg

from sferum_shared.adminapi import IssuedAccount
from synapse_sferum.ctl.deploy import template_loader
from synapse_sferum.ctl.deployment import Deployment, public_base_url
from synapse_sferum.ctl.errors import CtlError

TEMPLATE = "onboarding-sheet.html.j2"


@attrs.frozen
class Card:
    name: str  # the person's name, or their sourcedId where the server gave none
    classes: str  # the titles of the person's classes, e.g. "5А"
    user_id: str
    password: str | None  # None: issued earlier, not shown again
    qr_svg: markupsafe.Markup


def sign_in_link(homeserver: str, user_id: str) -> str:
    """What the QR code encodes: this server's sign-in help for this login, as a link.

    No Matrix app reads a QR code to fill in a password login, but every phone's camera opens
    a link: the page (`/join`, which reads the fragment and sends it nowhere) shows the server
    address and the login, and how to sign in with the apps. Not a matrix.to link: a public
    service the closed school network may not reach. The password is deliberately left out:
    it stays printed text, so a photo of the code alone does not open the account.
    """
    return f"{homeserver.rstrip('/')}/join#{user_id}"


def qr_svg(data: str) -> markupsafe.Markup:
    """An inline <svg> of `data` (no external files); sized by the page's CSS via its viewBox."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(data)
    code.make(fit=True)
    image = code.make_image(image_factory=qrcode.image.svg.SvgPathImage)
    svg: str = image.to_string(encoding="unicode")
    # Every card's path would carry the same id="qr-path": drop it, ids must be unique in a page.
    # What is left is our own path-only SVG, not user text: safe to insert unescaped.
    return markupsafe.Markup(svg.replace(' id="qr-path"', "", 1))


def template() -> jinja2.Template:
    """The sheet's template; loaded before any account is issued, so a broken one costs no
    one-time password."""
    env = jinja2.Environment(
        loader=template_loader(),
        undefined=jinja2.StrictUndefined,
        autoescape=True,  # names and IDs come from the roster: always escaped
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE)


def render_sheet(
    accounts: Sequence[IssuedAccount],
    *,
    heading: str,
    homeserver: str,
    page: jinja2.Template | None = None,
) -> str:
    """The HTML page: the families' cards, then the staff's on a sheet of their own, each in
    the admin API's order."""

    def card(a: IssuedAccount) -> Card:
        return Card(
            name=a.name or a.person,
            classes=", ".join(a.classes),
            user_id=a.user_id,
            password=a.password,
            qr_svg=qr_svg(sign_in_link(homeserver, a.user_id)),
        )

    families = [card(a) for a in accounts if not a.staff]
    staff = [card(a) for a in accounts if a.staff]
    return (page or template()).render(
        heading=heading, homeserver=homeserver, families=families, staff=staff
    )


def class_heading(class_id: str, accounts: Sequence[IssuedAccount]) -> str:
    """«класс 5А»: the class's title, the one every card of the class shares (its sourcedId,
    "5a", where the server named no classes)."""
    shared = set.intersection(*(set(a.classes) for a in accounts)) if accounts else set()
    title = next(iter(shared)) if len(shared) == 1 else class_id
    return f"класс {title}"


def write_sheet(
    deployment: Deployment,
    out: Path,
    heading: Callable[[Sequence[IssuedAccount]], str],
    fetch: Callable[[], Sequence[IssuedAccount]],
) -> int:
    """Asks for accounts (`fetch`: issue or reset them) and prints their cards to a new file,
    under the `heading` they make; returns the count.

    The passwords are shown only once, so everything that can fail without the server (the
    template, the config, the output file) is checked before asking for them, and an existing
    file is never overwritten: it may be the only copy of an earlier sheet's passwords.
    """
    page = template()
    # `public_baseurl`, not the address sferumctl connects to: a pupil's tablet must reach it.
    homeserver = public_base_url(deployment.load_config())
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds passwords
    except FileExistsError:
        raise CtlError(
            f"{out} exists; it may hold passwords shown only once: keep it, and "
            "choose another --out"
        ) from None
    except OSError as e:
        raise CtlError(f"cannot create {out}: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        try:
            accounts = fetch()
        except BaseException:
            out.unlink()  # no account was issued: leave no empty sheet behind
            raise
        try:
            f.write(
                render_sheet(accounts, heading=heading(accounts), homeserver=homeserver, page=page)
            )
            f.flush()
        except (OSError, ValueError) as e:  # the passwords must not be lost: print them
            raise CtlError(
                f"cannot write {out}: {e}; the accounts issued:",
                details=[json.dumps(attrs.asdict(a), ensure_ascii=False) for a in accounts],
            ) from None
    return len(accounts)
