"""The dashboard's static files (a package so that they ship as package data)."""
