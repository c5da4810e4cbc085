"""Preset emergency plans, plan selection, valve isolation and evacuation zoning (issue 4)."""
