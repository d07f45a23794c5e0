"""Console forms for user directories and the embedded directory's users."""

import re

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.forms import inlineformset_factory

from federation import directories
from federation.models import UserAttribute, UserDirectory
from federation.secretbox import seal_text

LDAP_FIELDS = [
    "name",
    "description",
    "hosts",
    "port",
    "security",
    "verify_tls",
    "tls_ca_alias",
    "bind_dn",
    "search_root",
    "scope",
    "user_dn_start",
    "user_dn_end",
    "user_filter",
    "group_search_root",
    "group_filter",
    "group_name_attribute",
    "connect_timeout",
    "operation_timeout",
]

LDAP_HELP = {
    "name": "How partnerships and the console refer to this directory; unique.",
    "description": "Optional note for other administrators (what the directory holds, who runs it).",
    "tls_ca_alias": "The CA (or the server's own certificate) from the keystore that the server certificate must chain "
    "to. Empty: FEDERATION_DIRECTORY_TLS_CA_FILE, else the system's CA store.",
    "hosts": "One or more LDAP servers, comma-separated, tried in order until one answers. "
    "A host may name its own port: ldap1.example.org, ldap2.example.org:1389, [2001:db8::1]:389.",
    "port": "Port for hosts that do not name one: 389 for plain LDAP and StartTLS, 636 for LDAPS.",
    "security": "StartTLS upgrades the plain port to TLS before binding; LDAPS speaks TLS from the first byte. "
    "Use one of them whenever the bind password crosses a network.",
    "verify_tls": "Check that the server certificate is trusted and names the host. Switch off only for a test server.",
    "bind_dn": "The service account used to search for users and read their attributes, "
    "e.g. cn=federation,ou=services,dc=example,dc=org. Empty binds anonymously.",
    "search_root": "Base DN under which users are searched and listed, e.g. dc=example,dc=org.",
    "scope": "Subtree searches the whole tree under the search root; one level only its direct children.",
    "user_dn_start": "With the end below, builds a user's DN directly: start + login + end, "
    "e.g. 'uid=' + 'alice' + ',ou=people,dc=example,dc=org'. Leave both empty to search with the user filter.",
    "user_dn_end": "The rest of the DN after the login, e.g. ',ou=people,dc=example,dc=org'.",
    "user_filter": "Finds the entry of a login when no DN lookup is set; %s is the login (escaped). "
    "E.g. (uid=%s) or (&(objectClass=inetOrgPerson)(|(uid=%s)(mail=%s))).",
    "group_search_root": "Base DN of group searches, e.g. ou=groups,dc=example,dc=org; empty uses the search root.",
    "group_filter": "Finds the groups of a user; %s is the user's DN (escaped). E.g. (&(objectClass=groupOfNames)(member=%s)).",
    "group_name_attribute": "Attribute of a group entry that holds its name (usually cn).",
    "connect_timeout": "Seconds to wait for a TCP connection to a host before trying the next one (1-300).",
    "operation_timeout": "Seconds to wait for the answer to a bind or a search (1-600).",
}

BIND_PASSWORD_HELP_NEW = "Password of the bind DN. Stored encrypted; never shown again."
BIND_PASSWORD_HELP_EDIT = (
    "Leave empty to keep the stored password (it is never shown). Type a new one to replace it. "
    "Clearing the bind DN removes the stored password."
)


def _trusted_aliases():
    from entities.models import KeystoreEntry

    trusted = KeystoreEntry.objects.exclude(kind=KeystoreEntry.Kind.KEY_PAIR).order_by("alias")
    return [(entry.alias, f"{entry.alias} ({entry.subject})") for entry in trusted]


class LDAPDirectoryForm(forms.ModelForm):
    """Create or change an LDAP directory. Saving requires a working connection: the form binds
    with the given settings and shows the server's refusal next to the field it concerns."""

    bind_password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=BIND_PASSWORD_HELP_NEW,
    )

    class Meta:
        model = UserDirectory
        fields = LDAP_FIELDS
        help_texts = LDAP_HELP
        labels = {
            "hosts": "Hosts",
            "bind_dn": "Bind DN",
            "verify_tls": "Verify the server certificate",
            "tls_ca_alias": "TLS CA from the keystore",
            "user_dn_start": "User DN lookup: start",
            "user_dn_end": "User DN lookup: end",
            "connect_timeout": "Connect timeout (seconds)",
            "operation_timeout": "Operation timeout (seconds)",
        }

    field_order = LDAP_FIELDS[:8] + ["bind_password"] + LDAP_FIELDS[8:]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.kind = UserDirectory.Kind.LDAP
        self.report = None
        self.fields["tls_ca_alias"] = forms.ChoiceField(
            required=False,
            label=self._meta.labels["tls_ca_alias"],
            help_text=LDAP_HELP["tls_ca_alias"],
            choices=[("", "— FEDERATION_DIRECTORY_TLS_CA_FILE or the system store —"), *_trusted_aliases()],
        )
        if self.instance.pk and self.instance.bind_password:
            self.fields["bind_password"].help_text = BIND_PASSWORD_HELP_EDIT
        for name in ("hosts", "bind_dn", "search_root", "user_dn_end", "user_filter", "group_search_root", "group_filter"):
            self.fields[name].widget.attrs.setdefault("size", 60)

    def _post_clean(self):
        super()._post_clean()  # builds the instance and runs the model's own validation
        new_password = self.cleaned_data.get("bind_password") or ""
        if not self.instance.bind_dn.strip():
            self.instance.bind_password = ""
        elif new_password:
            self.instance.bind_password = seal_text(new_password)
        elif not self.instance.bind_password:
            self.add_error("bind_password", "Enter the password of the bind DN.")
        if self.errors:
            return
        self.report = directories.test_connection(self.instance)
        if not self.report.ok:
            self.add_error(self.report.field if self.report.field in self.fields else None, self.report.message)


class EmbeddedDirectoryForm(forms.ModelForm):
    class Meta:
        model = UserDirectory
        fields = ["name", "description"]
        help_texts = {"name": LDAP_HELP["name"], "description": LDAP_HELP["description"]}


# --- the embedded directory's users ---------------------------------------------------------------


class GroupsField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return obj.name


class EmbeddedUserForm(forms.ModelForm):
    """A user of the embedded directory: names, e-mail, active flag, groups and (new) password."""

    groups = GroupsField(
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Groups the user belongs to. 'administrators' and 'auditors' are also the console roles.",
    )
    new_groups = forms.CharField(
        required=False,
        label="New groups",
        help_text="Names of groups to create and add the user to, comma-separated.",
    )
    password1 = forms.CharField(
        required=False,
        strip=False,
        label="Password",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters, not a common password.",
    )
    password2 = forms.CharField(
        required=False,
        strip=False,
        label="Password again",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The same password, to catch typing mistakes.",
    )

    class Meta:
        model = get_user_model()
        fields = ["username", "first_name", "last_name", "email", "is_active"]
        # A text input (the console's style sheet styles those) that still asks for an e-mail keyboard.
        widgets = {"email": forms.TextInput(attrs={"inputmode": "email", "autocomplete": "email"})}
        help_texts = {
            "username": "The login name; letters, digits and @ . + - _ only. Cannot be changed later.",
            "first_name": "Given name (search specs: first_name=%s).",
            "last_name": "Family name (search specs: last_name=%s).",
            "email": "E-mail address (search specs: email=%s).",
            "is_active": "Inactive users cannot sign in or be found by partnerships.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            del self.fields["username"]
            self.fields["groups"].initial = list(self.instance.groups.all())
            self.fields["password1"].label = "New password"
            self.fields["password1"].help_text = "Leave empty to keep the current password."
        else:
            self.fields["password1"].required = True
            self.fields["password2"].required = True

    def clean_new_groups(self):
        names = [name.strip() for name in self.cleaned_data["new_groups"].split(",") if name.strip()]
        for name in names:
            if len(name) > 150:
                raise forms.ValidationError(f"Group name '{name[:30]}…' is longer than 150 characters.")
        return names

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first or second:
            if first != second:
                self.add_error("password2", "The two passwords differ.")
            else:
                probe = self.instance if self.instance.pk else get_user_model()(username=cleaned.get("username", ""))
                try:
                    password_validation.validate_password(first, probe)
                except forms.ValidationError as exc:
                    self.add_error("password1", exc)
        return cleaned

    def save(self, commit=True):
        user = super().save(commit=False)
        if self.cleaned_data.get("password1"):
            user.set_password(self.cleaned_data["password1"])
        user.save()
        chosen = list(self.cleaned_data.get("groups") or [])
        chosen += [Group.objects.get_or_create(name=name)[0] for name in self.cleaned_data.get("new_groups", [])]
        user.groups.set(chosen)
        return user


_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][\w.:-]*")
RESERVED_ATTRIBUTE_NAMES = {*directories.EMBEDDED_FIELDS, "dn", "password", "groups"}


class UserAttributeForm(forms.ModelForm):
    class Meta:
        model = UserAttribute
        fields = ["name", "value"]
        widgets = {
            "name": forms.TextInput(attrs={"aria-label": "Attribute name", "size": 24}),
            "value": forms.TextInput(attrs={"aria-label": "Attribute value", "size": 50}),
        }
        help_texts = {
            "name": "Attribute name, e.g. employeeNumber. Several rows with one name make a multi-valued attribute.",
            "value": "One value.",
        }

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise forms.ValidationError("Start with a letter; use letters, digits and _ . : - only.")
        if name.lower() in RESERVED_ATTRIBUTE_NAMES:
            raise forms.ValidationError(f"'{name}' is a built-in field of the user, not an extra attribute.")
        return name


UserAttributeFormSet = inlineformset_factory(get_user_model(), UserAttribute, form=UserAttributeForm, extra=3, can_delete=True)
