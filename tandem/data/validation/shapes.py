"""Allowed shapes of values, shared by the suites (which check them) and the reasons (which never
quote a value outside them)."""

# What each quasi-identifier may look like, plain or generalized (tandem.privacy.policy's hierarchy):
# an allow-list of shapes, so an advertising id (UUID) or a serial number is never a device model or locale.
QUASI_IDENTIFIER_REGEX = {
    "device_model": r"^(?:[A-Za-z]{1,16}[0-9]{0,3}(?:,[0-9]{1,3})?|\*)$",
    "os_version": r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){0,2}|\*)$",
    "app_version": r"^(?:[0-9]{1,4}(?:\.[0-9]{1,4}){0,2}|\*)$",
    "locale": r"^(?:[a-z]{2,3}(?:_[A-Z]{2})?|\*)$",
}

# What Tandem itself emits in its free-text columns (tandem.fleet.user_data, the pseudonym key's
# version), plain or generalized; anything else is quarantined before its rows enter, by shape only:
# an advertising id or a raw user id as a key id, a name as a device model, an IMEI as a version.
EMITTED_SHAPES = {
    "key_id": r"^[a-z]{1,3}[0-9]{1,6}$",  # k1, k2, ...: TANDEM_PSEUDONYM_KEY_ID
    "device_model": r"^(?:(?:iPhone|iPad|iPod|Watch|AppleTV|Mac|RealityDevice)(?:[0-9]{1,3}(?:,[0-9]{1,3})?)?|\*)$",
    "os_version": r"^(?:[0-9]{1,2}(?:\.[0-9]{1,2}){0,2}|\*)$",
    "app_version": r"^(?:[0-9]{1,2}(?:\.[0-9]{1,3}){0,2}|\*)$",
    "locale": r"^(?:[a-z]{2,3}(?:_[A-Z]{2})?|\*)$",
}
