# check=experimental=InvalidDefinitionDescription
#
# Breaks each of BuildKit's 22 build checks exactly once (see
# frontend/tests/lint_rules.rs for the expected findings and the facts the
# test passes in: IMG=busybox as a build arg, secret.txt excluded by
# .dockerignore, a resolver that reports armonly as windows/amd64).
#
ARG IMG

FROM scratch AS Builder
WORKDIR app
ENV GREETING=$NOT_DEFINED
ENV LEGACY value
run true

FROM scratch as lowercase-as
CMD ["first"]
CMD echo second
MAINTAINER someone

FROM scratch AS dup

FROM scratch AS dup
RUN echo a \

    b

FROM scratch AS context
ARG API_TOKEN
EXPOSE 80/TCP
EXPOSE 8080:80

FROM scratch${NOPE} AS undeclared

FROM --platform=$TARGETPLATFORM scratch AS redundant

FROM --platform=linux/amd64 scratch AS constplat

FROM ${IMG} AS fromdefault

FROM armonly AS wrongplatform
COPY secret.txt /

# this is not the stage name
FROM scratch AS described
