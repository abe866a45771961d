from django import forms

from core import validators
from tenants.models import Customer, Tenant


class CustomerForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = ["name", "contact_email", "expected_tenant"]
        labels = {"expected_tenant": "Tenant ID or primary domain (optional)"}

    def clean_expected_tenant(self) -> str:
        value = self.cleaned_data["expected_tenant"].strip()
        if not value:
            return ""
        if validators.is_guid(value):
            value = value.lower()
            if Tenant.objects.filter(tenant_id=value).exists():
                raise forms.ValidationError(
                    "This tenant is already connected to another customer; "
                    "a tenant can belong to one customer only."
                )
            return value
        if validators.is_domain(value):
            return value.lower()
        raise forms.ValidationError(
            "Enter a tenant ID (a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47) "
            "or a domain such as contoso.onmicrosoft.com."
        )
