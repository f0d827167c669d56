"""The `interns` package lives in `services/`; setuptools needs its subpackages listed."""

from setuptools import find_packages, setup

setup(
    packages=["interns", *(f"interns.{name}" for name in find_packages("services"))],
)
