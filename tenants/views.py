from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenants import selectors


@login_required
def customer_list(request: HttpRequest) -> HttpResponse:
    customers = selectors.list_customers(user=request.user)
    return render(request, "tenants/customer_list.html", {"customers": customers})
