# The packet magic and types gatekeeper's tests send by hand (a forged result).
from typing import Final

REQ: Final[bytes]
RES: Final[bytes]
WORK_DATA: Final[int]
WORK_COMPLETE: Final[int]
