"""Forms of the keystore console pages. They only collect input; entities.services checks it and
its KeystoreError messages are put at the field they name (see `add_keystore_error`)."""

from django import forms

from entities.keystore import ALGORITHM_CHOICES, MAX_INPUT_BYTES, MAX_VALIDITY_DAYS, MIN_PKCS12_PASSWORD_LENGTH
from entities.models import ExpiryLevel, KeystoreEntry

ALIAS_HELP = "The name partnerships and entities use for this entry: letters, digits, '.', '_' and '-'."
SUBJECT_HELP = "Distinguished name, most specific first, e.g. CN=idp.example.org,O=Example,C=JP."
SAN_HELP = (
    "Subject alternative names, one per line or comma-separated: host names (idp.example.org), "
    "URIs (https://idp.example.org/), IP addresses. Optional."
)


def add_keystore_error(form, error, field_map=None):
    """Show each problem of a KeystoreError at its field when the form has that field, else above the form."""
    for field, message in error.problems:
        field = (field_map or {}).get(field, field)
        form.add_error(field if field in form.fields else None, message)


class _FileOrPemForm(forms.Form):
    """A certificate as an uploaded file or as pasted PEM text (exactly one of them)."""

    file = forms.FileField(
        label="Certificate file",
        required=False,
        help_text="PEM, DER or PKCS#7 (.p7b) file.",
    )
    pem = forms.CharField(
        label="Or paste PEM",
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text="The -----BEGIN CERTIFICATE----- block(s), if you have no file.",
    )

    def clean(self):
        cleaned = super().clean()
        upload, pem = cleaned.get("file"), (cleaned.get("pem") or "").strip()
        if upload and pem:
            raise forms.ValidationError("Choose a file or paste PEM text, not both.")
        if not upload and not pem:
            self.add_error("file", "Choose a file or paste the PEM text below.")
        elif upload and upload.size > MAX_INPUT_BYTES:
            self.add_error("file", "This file is too large to be a certificate or key (limit 1 MB).")
        return cleaned

    def data_bytes(self):
        upload = self.cleaned_data.get("file")
        return upload.read() if upload else self.cleaned_data["pem"].strip().encode()

    def data_field(self):
        """Where a problem with the data is shown: the input that was used."""
        return "file" if self.cleaned_data.get("file") else "pem"


class GenerateKeyPairForm(forms.Form):
    alias = forms.CharField(label="Alias", max_length=100, help_text=ALIAS_HELP)
    algorithm = forms.ChoiceField(
        label="Algorithm",
        choices=ALGORITHM_CHOICES,
        initial="rsa2048",
        help_text="RSA 2048 or 3072 works with every partner; EC keys are smaller and faster where partners support them.",
    )
    subject = forms.CharField(label="Subject", max_length=1000, help_text=SUBJECT_HELP)
    days = forms.IntegerField(
        label="Validity (days)",
        initial=365,
        min_value=1,
        max_value=MAX_VALIDITY_DAYS,
        help_text="How long the self-signed certificate is valid. A CA-signed certificate imported later brings its own validity.",
    )
    san = forms.CharField(
        label="Alternative names (SAN)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=SAN_HELP,
    )


class CsrForm(forms.Form):
    subject = forms.CharField(
        label="Subject",
        required=False,
        max_length=1000,
        help_text="Subject of the request; leave empty to use the certificate's subject. " + SUBJECT_HELP,
    )
    san = forms.CharField(
        label="Alternative names (SAN)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Leave empty to use the certificate's alternative names. " + SAN_HELP,
    )


class ImportSignedCertificateForm(_FileOrPemForm):
    """The certificate the CA returned for this key pair's CSR (the chain may come with it)."""


class ImportTrustedCertificateForm(_FileOrPemForm):
    alias = forms.CharField(label="Alias", max_length=100, help_text=ALIAS_HELP)
    field_order = ["alias", "file", "pem"]


class ImportTrustedCaForm(_FileOrPemForm):
    alias = forms.CharField(
        label="Alias",
        max_length=100,
        help_text=ALIAS_HELP
        + " With several CA certificates in the file they are named alias, alias-2, alias-3, … in file order.",
    )
    field_order = ["alias", "file", "pem"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].label = "CA certificate file"
        self.fields["file"].help_text = "PEM with one or more CA certificates (a chain or a bundle), DER or PKCS#7 (.p7b)."


class ImportKeyPairForm(forms.Form):
    # No paste box here: a form shown again after an error would echo a pasted private key.
    alias = forms.CharField(label="Alias", max_length=100, help_text=ALIAS_HELP)
    file = forms.FileField(
        label="Key pair file",
        help_text="PKCS#12 (.p12/.pfx), or PEM with the private key and its certificate (and chain).",
    )
    certificate_file = forms.FileField(
        label="Certificate file (PEM)",
        required=False,
        help_text="Only when the PEM key file above does not contain the certificate.",
    )
    password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Password of the PKCS#12 file or of an encrypted PEM key; empty if it has none. Not stored.",
    )

    def clean(self):
        cleaned = super().clean()
        for name in ("file", "certificate_file"):
            upload = cleaned.get(name)
            if upload and upload.size > MAX_INPUT_BYTES:
                self.add_error(name, "This file is too large to be a certificate or key (limit 1 MB).")
        return cleaned

    def data_bytes(self):
        data = self.cleaned_data["file"].read()
        extra = self.cleaned_data.get("certificate_file")
        if extra:
            # A PEM key and a PEM certificate read as one bundle.
            data = data.rstrip() + b"\n" + extra.read()
        return data


class ExportPkcs12Form(forms.Form):
    password = forms.CharField(
        label="Password",
        min_length=MIN_PKCS12_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=f"Protects the PKCS#12 file; at least {MIN_PKCS12_PASSWORD_LENGTH} characters. Not stored.",
    )
    password_again = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The same password once more, to rule out a typing mistake.",
    )
    confirm = forms.BooleanField(
        label="I understand that this file contains the private key",
        help_text="Whoever has the file and the password can sign and decrypt as this site. The export is written to the audit log.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("password") != cleaned.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return cleaned


class KeystoreFilterForm(forms.Form):
    """The list page's filters (GET)."""

    q = forms.CharField(label="Search", required=False, help_text="Part of an alias or subject.")
    kind = forms.ChoiceField(
        label="Kind", required=False, choices=[("", "All kinds"), *KeystoreEntry.Kind.choices], help_text="Type of entry."
    )
    level = forms.ChoiceField(
        label="Expiry", required=False, choices=[("", "Any expiry"), *ExpiryLevel.choices], help_text="Expiry level."
    )
    sort = forms.ChoiceField(
        label="Sort by",
        required=False,
        choices=[("alias", "Alias"), ("not_after", "Expiry (soonest first)"), ("-created_at", "Newest first")],
        help_text="Order of the list.",
    )
