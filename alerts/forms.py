"""Input of the queue's filters and of staff triage."""

from django import forms

from alerts import keyset, queue, search, triage
from alerts.models import Alert, AlertStatus, Severity

# --- The queue ------------------------------------------------------------------------

MAX_SEARCH_TERMS = 6
MIN_TERM_LENGTH = 3


class QueueFilterForm(forms.Form):
    """The queue's view state, all of it in the URL (shareable, bookmarkable)."""

    customer = forms.UUIDField(required=False)
    severity = forms.MultipleChoiceField(choices=Severity.choices, required=False)
    status = forms.MultipleChoiceField(choices=AlertStatus.choices, required=False)
    source = forms.MultipleChoiceField(choices=Alert.Source.choices, required=False)
    category = forms.CharField(max_length=128, required=False, strip=True)
    assigned = forms.ChoiceField(
        choices=[("", "Anyone"), ("me", "Me"), ("unassigned", "Unassigned")],
        required=False,
    )
    range = forms.ChoiceField(
        choices=[("", "Any time"), *((k, k) for k in queue.QUEUE_RANGES)],
        required=False,
    )
    q = forms.CharField(max_length=200, required=False, strip=True)
    sort = forms.ChoiceField(choices=list(queue.QUEUE_SORTS.items()), required=False)
    after = forms.CharField(max_length=300, required=False)

    def __init__(self, data=None, **kwargs) -> None:
        # A submitted filter form sends every field, most of them empty: an empty
        # value means "any", not an invalid choice.
        if data is not None:
            data = data.copy()
            for key in list(data):
                values = [v for v in data.getlist(key) if v != ""]
                if values:
                    data.setlist(key, values)
                else:
                    del data[key]
        super().__init__(data, **kwargs)

    def clean_q(self) -> list[str]:
        terms = self.cleaned_data["q"].split()
        if len(terms) > MAX_SEARCH_TERMS:
            raise forms.ValidationError(
                f"Search for at most {MAX_SEARCH_TERMS} words at a time."
            )
        short = [t for t in terms if len(t) < MIN_TERM_LENGTH]
        if short:
            raise forms.ValidationError(
                f"Each search word needs at least {MIN_TERM_LENGTH} characters "
                f"({', '.join(short[:3])} is too short)."
            )
        wordless = [t for t in terms if not search.words(t)]
        if wordless:
            raise forms.ValidationError(
                "Each search word needs a letter or digit "
                f"({', '.join(wordless[:3])} has none)."
            )
        return terms

    def clean_sort(self) -> str:
        return self.cleaned_data["sort"] or "-updated"

    def clean(self) -> dict:
        data = super().clean()
        after = data.get("after")
        if after and "sort" in data:
            try:
                data["after"] = keyset.decode(after, data["sort"])
            except ValueError:
                self.add_error("after", "This page link is broken or out of date.")
        else:
            data["after"] = None
        return data


# --- Triage ---------------------------------------------------------------------------


class TriageForm(forms.Form):
    """One staff change to an alert; empty fields mean "leave as is"."""

    based_on = forms.DateTimeField(widget=forms.HiddenInput)
    status = forms.ChoiceField(
        choices=[("", "Keep"), *((s.value, s.label) for s in triage.STATUSES)],
        required=False,
    )
    assign = forms.ChoiceField(required=False)
    classification = forms.ChoiceField(
        choices=[("", "Keep"), *triage.CLASSIFICATIONS.items()], required=False
    )
    determination = forms.ChoiceField(
        choices=[("", "Keep"), *triage.DETERMINATIONS.items()], required=False
    )
    comment = forms.CharField(max_length=1000, required=False, widget=forms.Textarea)

    def __init__(self, *args, user, assignees: list, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.assignees = {staff_name(u): u for u in assignees}
        self.fields["assign"].choices = [
            ("", "Keep"),
            ("me", f"Me ({staff_name(user)})"),
            ("nobody", "Unassign"),
            *((name, name) for name in self.assignees if name != staff_name(user)),
        ]

    def clean(self) -> dict:
        data = super().clean()
        changes = {}
        for field in ("status", "classification", "determination"):
            if data.get(field):
                changes[field] = data[field]
        assign = data.get("assign")
        if assign == "me":
            changes["assigned_to"] = staff_name(self.user)
        elif assign == "nobody":
            changes["assigned_to"] = ""
        elif assign:
            changes["assigned_to"] = assign
        if not changes and not data.get("comment"):
            raise forms.ValidationError("Choose a change or write a comment.")
        data["changes"] = changes
        return data


def staff_name(user) -> str:
    """How Defender's `assignedTo` names a staff member: their email (UPN) if known."""
    return user.email or user.get_username()
