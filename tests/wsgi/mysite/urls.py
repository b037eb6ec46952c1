from django.http import HttpResponse
from django.urls import path


def hello(request):
    return HttpResponse("hello from django, " + request.GET.get("who", "nobody"))


urlpatterns = [path("hello/", hello)]
