from django.urls import path, register_converter

from entities import keystore_views as views
from entities.models import ALIAS_PATTERN


class AliasConverter:
    regex = ALIAS_PATTERN

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(AliasConverter, "alias")

app_name = "keystore"
urlpatterns = [
    path("", views.entry_list, name="list"),
    path("generate/", views.generate, name="generate"),
    path("import/key-pair/", views.import_key_pair, name="import_key_pair"),
    path("import/trusted-certificate/", views.import_trusted_certificate, name="import_trusted_certificate"),
    path("import/trusted-ca/", views.import_trusted_ca, name="import_trusted_ca"),
    path("entries/<alias:alias>/", views.entry_detail, name="detail"),
    path("entries/<alias:alias>/csr/", views.create_csr, name="create_csr"),
    path("entries/<alias:alias>/csr/download/", views.download_csr, name="download_csr"),
    path("entries/<alias:alias>/import-signed/", views.import_signed, name="import_signed"),
    path("entries/<alias:alias>/export/pem/", views.export_certificate, {"fmt": "pem"}, name="export_pem"),
    path("entries/<alias:alias>/export/der/", views.export_certificate, {"fmt": "der"}, name="export_der"),
    path("entries/<alias:alias>/export/pkcs12/", views.export_pkcs12, name="export_pkcs12"),
    path("entries/<alias:alias>/delete/", views.delete, name="delete"),
]
