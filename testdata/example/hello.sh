#!/bin/sh
echo "$GREETING from strata ($(cat /app/built.txt))"
